"""Training: the loop, its device and precision, checkpoints, and several processes.

Takes a `Config` and a `FeatureStore`; gives a run directory (config, vocabularies, MI,
`metrics.jsonl`, `checkpoint.pt`, `run.json`, `summary.json`) through `train.run_training`.
`device` resolves where and in what precision a run trains; `distributed` holds the
data-parallel pieces the loop calls and the `torchrun` launcher; `checkpoint` writes and
verifies what a run leaves behind.
"""
