"""Studies: grids and tuning studies that answer "does this method help on my data?".

Takes a study spec (YAML: a schema, arms or a grid, budgets, seeds); gives resumable cell run
directories and a summary with paired intervals. `spec` parses and names cells, `cells` runs
and reads them, `compare` computes a grid's comparisons, `tuning` is the tuning protocol (two-stage or
joint, nested trial sequences, replicates, preregistration), `stats` its intervals, `summary`
a study's summary JSON, `sweep` the entry point that `sslkit sweep` calls.
"""
