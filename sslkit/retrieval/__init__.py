"""Retrieval: vectors from a trained run, and the indexes that serve them.

Takes a run directory; gives item/query vectors for the catalog or new rows (`embed`), exact
blocked top-k and HNSW indexes (`index`), and top-k recommendations for ids streamed on stdin
(`recommend`).
"""
