"""`sslkit eval`: whole-catalog retrieval metrics for trained runs (DESIGN §5)."""

from __future__ import annotations

import numpy as np


def group_pairs(pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group (query_row, item_row) pairs by query, de-duplicated.

    Returns:
        queries int64 (Q,) sorted, indptr int64 (Q+1,), items int64 (nnz,) sorted within each query.
    """
    p = np.unique(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), axis=0)
    queries, starts = np.unique(p[:, 0], return_index=True)
    indptr = np.append(starts, len(p)).astype(np.int64)
    return queries, indptr, p[:, 1].copy()
