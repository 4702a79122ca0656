"""Evaluation: whole-catalog retrieval metrics, slices, TopPopular and intervals.

Takes a run directory and a split; gives Recall@K / MAP@K over the whole catalog, per query and
per slice (head / tail / cold), TopPopular under the same options, ANN recall when an HNSW index
serves, and the bootstrap intervals comparisons use (`metrics`, `evaluate`).
"""
