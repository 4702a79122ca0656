"""Exact pairwise mutual information between item features over the catalog (paper eq. 4).

Correlated Feature Masking (Yao et al., CIKM 2021, §3.2) masks highly correlated features together,
the correlation being the mutual information of two categorical features (eq. 4),
``MI(V_i, V_j) = Σ_{x,y} P(x, y) log(P(x, y) / (P_i(x) P_j(y)))``, pre-computed over the catalog.

Distributions: every catalog row carries unit mass. A row whose feature i holds the bag A (its
``a`` non-padding values, duplicates by multiplicity) and feature j the bag B adds ``1/(a·b)`` to
``P(x, y)`` for each ``(x, y)`` in ``A × B``; a row without values counts as the value "missing"
(id 0). So ``P_i(x) = Σ_rows count(x in A) / a / rows``, consistent with the joint; for
single-valued features this is the contingency table of ``sklearn.metrics.mutual_info_score``.
In nats; ``MI(i, i) := H(i)``; normalized MI is ``MI / sqrt(H_i · H_j)`` (scikit-learn's
``average_method="geometric"``), 0 when either entropy is 0, diagonal 1 (0 when ``H = 0``).

Computation (no Python loop over rows): each feature is factorized once to compact codes, with
its entropy. For a pair, the value pairs become int64 joint codes ``x · card_j + y`` (bags: a
broadcast ``(row, a, b)`` grid with validity mask and weights ``1/(a·b)``), counted with
``np.bincount`` in row chunks when the code space is small, else by sorting chunks of the values
of one feature taken in code order (so chunks share at most one code; memory O(chunk), not
O(value pairs)); then ``MI = H_i + H_j − H(i, j)``. Pairs are processed one at a time.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from sslkit.errors import SslkitError

__all__ = ["MIResult", "mutual_information", "mask_sets", "default_mask_size", "catalog_mi",
           "plot_heatmap", "PlotDependencyError"]

_DENSE_MAX = 1 << 24  # largest joint code space ever counted with bincount
_DENSE_PER_PAIR = 4  # ... and at most this many slots per value pair counted (else a sort)
_DENSE_MIN = 1 << 16  # small code spaces are always counted with bincount
_CHUNK = 1 << 22  # value pairs per chunk of rows for bag features (bounds memory)
_COMPOSITE_MAX = 1 << 62  # bound of the int64 sort keys (joint code, a·b class) of `_aggregate`
_TOL = 1e-9  # tolerance of the JSON invariants checked by `MIResult.from_json`


class PlotDependencyError(SslkitError, ImportError):
    """matplotlib is not installed (an `ImportError`, shown by the CLI as a one-line error)."""


@dataclass(frozen=True)
class MIResult:
    """Pairwise mutual information between features.

    Attributes:
        features: feature names, in input order.
        mi: ``(F, F)`` float64 mutual information in nats; symmetric, diagonal = entropy.
        nmi: ``(F, F)`` float64 ``MI / sqrt(H_i · H_j)`` in [0, 1] (0 when an entropy is 0).
        entropy: ``(F,)`` float64 entropy of each feature in nats.
    """

    features: list[str]
    mi: np.ndarray
    nmi: np.ndarray
    entropy: np.ndarray

    def to_json(self, mask_size: int | None = None, normalized: bool = False) -> dict[str, Any]:
        """A JSON-ready dict (plain Python values) with the matrices and the CFM masking sets.

        Args:
            mask_size: ``|F_m|`` (default ``floor(k/2)``, clamped to ``[1, k-1]``); the dict's
                ``mask_size`` is the size actually used.
            normalized: rank the masking sets by normalized MI (``measure: "nmi"``), not MI.

        Returns:
            ``{"features", "mi", "nmi", "entropy", "mask_sets", "mask_size", "measure"}``.
        """
        size = _effective_mask_size(len(self.features), mask_size)
        matrix = self.nmi if normalized else self.mi
        return {"features": [str(f) for f in self.features],
                "mi": [[float(v) for v in row] for row in self.mi],
                "nmi": [[float(v) for v in row] for row in self.nmi],
                "entropy": [float(v) for v in self.entropy],
                "mask_sets": mask_sets(matrix, self.features, size),
                "mask_size": size,
                "measure": "nmi" if normalized else "mi"}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> MIResult:
        """Rebuild a result from `to_json` output (``mask_sets`` is checked when present).

        Raises:
            ValueError: a key is missing, a shape does not match the features, or a value is not
                a finite number or violates the invariants (symmetry, non-negativity, nmi <= 1).
        """
        if not isinstance(obj, Mapping):
            raise ValueError(f"MI JSON must be an object, got {type(obj).__name__}")
        missing = [key for key in ("features", "mi", "nmi", "entropy") if key not in obj]
        if missing:
            raise ValueError(f"MI JSON lacks key(s) {', '.join(missing)}")
        feats = obj["features"]
        if not isinstance(feats, list) or not all(isinstance(f, str) for f in feats):
            raise ValueError("MI JSON 'features' must be a list of feature names")
        if len(set(feats)) != len(feats):
            raise ValueError("MI JSON 'features' has duplicate names")
        k = len(feats)
        mi, nmi = _float_array(obj, "mi", (k, k)), _float_array(obj, "nmi", (k, k))
        ent = _float_array(obj, "entropy", (k,))
        if (ent < 0).any() or (mi < -_TOL).any() or (nmi < -_TOL).any() or (nmi > 1 + _TOL).any():
            raise ValueError("MI JSON has negative entropies/MI or normalized MI outside [0, 1]")
        if not (np.allclose(mi, mi.T, rtol=0, atol=_TOL) and np.allclose(nmi, nmi.T, rtol=0, atol=_TOL)):
            raise ValueError("MI JSON 'mi'/'nmi' matrices are not symmetric")
        if obj.get("measure", "mi") not in ("mi", "nmi"):
            raise ValueError(f"MI JSON 'measure' must be 'mi' or 'nmi', got {obj.get('measure')!r}")
        size = obj.get("mask_size", 1)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"MI JSON 'mask_size' must be a positive integer, got {size!r}")
        sets = obj.get("mask_sets")
        if sets is not None and (not isinstance(sets, Mapping) or sorted(sets) != sorted(feats)):
            raise ValueError("MI JSON 'mask_sets' must have one masking set per feature")
        for seed, members in (sets or {}).items():
            if (not isinstance(members, list) or not members or members[0] != seed
                    or not set(members) <= set(feats) or len(set(members)) != len(members)):
                raise ValueError(f"MI JSON mask set of {seed!r} must start with the seed and list distinct features")
        return cls(features=list(feats), mi=mi, nmi=nmi, entropy=ent)


def _float_array(obj: Mapping[str, Any], key: str, shape: tuple[int, ...]) -> np.ndarray:
    """``obj[key]`` as a finite float64 array of the given shape, else `ValueError`."""
    try:
        arr = np.asarray(obj[key], dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"MI JSON '{key}' is not a numeric array ({e})") from None
    if arr.size == 0 and math.prod(shape) == 0:
        arr = arr.reshape(shape)
    if arr.shape != shape:
        raise ValueError(f"MI JSON '{key}' has shape {arr.shape}, expected {shape} for {shape[0]} features")
    if not np.isfinite(arr).all():
        raise ValueError(f"MI JSON '{key}' has non-finite values")
    return arr


def default_mask_size(k: int) -> int:
    """The default ``|F_m|`` for ``k`` features: ``floor(k/2)``, at least 1.

    The paper takes the seed plus ``n = floor(k/2)`` correlated features "so that the masked and
    retained sets of features have roughly the same size". Read literally that masks
    ``floor(k/2) + 1`` features (both of ``k = 2``, leaving the other view nothing), so we count the
    seed in ``|F_m| = floor(k/2)``: exact halves for even ``k`` (the complementary view keeps
    ``ceil(k/2)``), within ``[1, k-1]`` for ``k ≥ 2``; ``k ≤ 1`` gives 1.

    Raises:
        ValueError: ``k`` is negative.
    """
    if k < 0:
        raise ValueError(f"number of features must be >= 0, got {k}")
    return max(1, k // 2)


def _effective_mask_size(k: int, mask_size: int | None) -> int:
    """``mask_size`` (default `default_mask_size`) clamped to ``[1, k-1]`` (1 when ``k ≤ 1``)."""
    if mask_size is None:
        return default_mask_size(k)
    if isinstance(mask_size, bool) or not isinstance(mask_size, (int, np.integer)) or mask_size < 1:
        raise ValueError(f"mask_size must be a positive integer, got {mask_size!r}")
    return max(1, min(int(mask_size), k - 1))


def mask_sets(matrix: np.ndarray, features: Sequence[str], mask_size: int | None = None) -> dict[str, list[str]]:
    """The Correlated Feature Masking set ``F_m`` of every seed feature (paper §3.2).

    ``F_m`` is the seed first, then the other features in decreasing order of
    ``matrix[seed, other]`` (ties broken by feature order), until ``|F_m| = mask_size``.

    Args:
        matrix: ``(k, k)`` correlation matrix (MI or normalized MI).
        features: the ``k`` feature names, in matrix order.
        mask_size: ``|F_m|``; default ``floor(k/2)`` (see `default_mask_size`), clamped to
            ``[1, k-1]`` when ``k ≥ 2`` (``k == 1`` gives ``[seed]``).

    Returns:
        ``{seed name: [seed, most correlated, ...]}`` in feature order.

    Raises:
        ValueError: the matrix does not match the features, or ``mask_size < 1``.
    """
    names = [str(f) for f in features]
    k = len(names)
    mat = np.asarray(matrix, dtype=np.float64)
    if mat.shape != (k, k):
        raise ValueError(f"matrix has shape {mat.shape}, expected ({k}, {k}) for {k} features")
    size = _effective_mask_size(k, mask_size)
    out: dict[str, list[str]] = {}
    index = np.arange(k)
    for s in range(k):
        row = np.nan_to_num(mat[s], nan=-np.inf)
        order = np.lexsort((index, -row))  # by value descending, then feature order
        others = [int(j) for j in order if j != s][: size - 1]
        out[names[s]] = [names[s]] + [names[j] for j in others]
    return out


CFM_ID_MODES: tuple[str, ...] = ("paper", "exclude", "alone")
"""Where CFM's masking sets put an id feature (a feature unique to every item): `ssl.cfm_id`."""


def id_features(features: Sequence[str], entropy: Sequence[float], rows: int) -> list[str]:
    """The features that are an id: every one of the `rows` items has its own value (entropy log(rows)).
    Give single-valued features only (a bag's entropy counts its values, not its rows).

    Raw MI ranks such a feature first for every seed (its MI with a feature is that feature's whole
    entropy), so under the paper's definition every CFM masking set holds it.
    """
    full = math.log(rows) if rows > 1 else 0.0
    return [str(f) for f, h in zip(features, entropy) if rows > 1 and h >= full - 1e-9]


def cfm_id_sets(matrix: np.ndarray, features: Sequence[str], mask_size: int | None, ids: Sequence[str],
                mode: str) -> dict[str, list[str]]:
    """CFM masking sets with the id features placed by `mode` (`ssl.cfm_id`).

    * ``paper``: `mask_sets` unchanged: the id is ranked by its MI like any feature (with raw MI it
      joins every seed's set, so view 1 never sees the id and view 2 always does).
    * ``exclude``: the id ranked out of the correlation order — another seed's set takes the id only
      when every other feature is already in it; the id's own set is the paper's.
    * ``alone``: as ``exclude``, and the id's own set is the id alone (that view is the features
      without the id, the other view the id alone).

    Raises:
        ValueError: unknown `mode`, or as `mask_sets`.
    """
    if mode not in CFM_ID_MODES:
        raise ValueError(f"cfm_id must be one of {', '.join(CFM_ID_MODES)}, got {mode!r}")
    mat = np.array(matrix, dtype=np.float64)
    names = [str(f) for f in features]
    cols = [names.index(f) for f in ids if f in names]
    if mode == "paper" or not cols:
        return mask_sets(mat, names, mask_size)
    for c in cols:
        others = np.arange(len(names)) != c
        mat[others, c] = -np.inf  # last in every other seed's order
    sets = mask_sets(mat, names, mask_size)
    if mode == "alone":
        for c in cols:
            sets[names[c]] = [names[c]]
    return sets


@dataclass
class _Feature:
    """One feature, factorized: compact codes ``0..card-1`` and what the pairs need."""

    codes: np.ndarray  # int32 (rows, L); slots where `valid` is False hold 0
    valid: np.ndarray | None  # bool (rows, L); None for a single-valued feature (L == 1)
    lens: np.ndarray | None  # int64 (rows,) number of values (an empty row: 1); None if single-valued
    card: int  # number of distinct values (incl. "missing" when it occurs)
    entropy: float  # nats
    unique: bool  # single-valued and every row has its own value (an id)
    entries: tuple[np.ndarray, np.ndarray] | None = None  # (row, code) of all values by code, lazily


def _factorize(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Non-negative ints → (compact int32 codes in value order, number of distinct values)."""
    if values.size == 0:
        return np.zeros(0, np.int32), 0
    vmax = int(values.max())
    if vmax < max(4 * values.size, _DENSE_MIN):  # lookup table over the (small) id range
        present = np.bincount(values, minlength=vmax + 1) > 0
        lut = np.cumsum(present, dtype=np.int64) - 1
        return lut[values].astype(np.int32), int(present.sum())
    uniq, inverse = np.unique(values, return_inverse=True)
    return inverse.reshape(-1).astype(np.int32), len(uniq)


def _plogp(mass: np.ndarray, rows: int) -> float:
    """``-Σ p log p`` over ``p = mass / rows`` (masses > 0, in row units)."""
    p = mass / rows
    return float(-(p * np.log(p)).sum())


def _entropy(mass: np.ndarray, rows: int) -> float:
    """Entropy (nats) of the distribution with the given masses (0 for a single value)."""
    mass = mass[mass > 0]
    return max(_plogp(mass, rows), 0.0) if len(mass) > 1 else 0.0


def _prepare(name: str, arr: Any, rows: int | None) -> _Feature:
    """Validate one encoded feature and factorize it (marginal entropy included)."""
    a = np.asarray(arr)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"feature {name!r}: expected an integer array [rows, max_len], got {a.dtype} {a.shape}")
    if rows is not None and len(a) != rows:
        raise ValueError(f"feature {name!r} has {len(a)} rows, expected {rows}")
    if a.size and int(a.min()) < 0:
        raise ValueError(f"feature {name!r} has negative ids (0 = padding, 1 = OOV, values >= 2)")
    n = len(a)
    if a.shape[1] == 0:
        a = np.zeros((n, 1), np.int64)
    if a.shape[1] > 1:
        valid = a != 0
        lens = valid.sum(1)
        if (lens <= 1).all():  # at most one value per row: a single-valued feature in disguise
            a = a.max(1, keepdims=True)
        else:
            valid[:, 0] |= lens == 0  # an empty row is the one value "missing" (id 0)
            lens = np.maximum(lens, 1).astype(np.int64)
            codes_flat, card = _factorize(a[valid].astype(np.int64))
            codes = np.zeros(a.shape, np.int32)
            codes[valid] = codes_flat
            weights = np.broadcast_to(1.0 / lens[:, None], a.shape)[valid]
            mass = np.bincount(codes_flat, weights=weights, minlength=card)
            return _Feature(codes, valid, lens, card, _entropy(mass, n), False)
    codes_flat, card = _factorize(a[:, 0].astype(np.int64))
    mass = np.bincount(codes_flat, minlength=card)
    return _Feature(codes_flat[:, None], None, None, card, _entropy(mass, n), card == n and n > 1)


def _dense_limit(value_pairs: int, dense_limit: int | None) -> int:
    """Largest joint code space counted with bincount for a pair with this many value pairs."""
    if dense_limit is not None:
        return dense_limit
    return min(_DENSE_MAX, max(_DENSE_PER_PAIR * value_pairs, _DENSE_MIN))


def _runs(sorted_keys: np.ndarray) -> np.ndarray:
    """Start index of every run of equal values in a sorted array."""
    if len(sorted_keys) == 0:
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])


def _aggregate(keys: np.ndarray, ab: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Mass per distinct key, each occurrence weighing ``1 / ab``: (sorted keys, masses).

    ``ab`` (the row's ``a·b``, ints; None = all 1) joins the key in one int64 sort key, so a plain
    `np.sort` does the work (several times faster than an argsort-based `np.unique`).
    """
    if ab is None or len(keys) == 0:
        s = np.sort(keys)
        starts = _runs(s)
        return s[starts], np.diff(np.r_[starts, len(s)]).astype(np.float64)
    shift = int(ab.max() - 1).bit_length()  # low bits of the sort key: a·b − 1
    if int(keys.max()) >= _COMPOSITE_MAX >> shift:  # no room for it: sum weights by key instead
        uniq, inverse = np.unique(keys, return_inverse=True)
        return uniq, np.bincount(inverse.reshape(-1), weights=1.0 / ab, minlength=len(uniq))
    s = np.sort((keys << shift) | (ab - 1))
    starts = _runs(s)
    head = s[starts]
    key, mass = head >> shift, np.diff(np.r_[starts, len(s)]) / ((head & ((1 << shift) - 1)) + 1)
    first = _runs(key)
    return key[first], np.add.reduceat(mass, first)


def _sorted_entries(f: _Feature) -> tuple[np.ndarray, np.ndarray]:
    """(row, code) of every value of a bag feature, sorted by code then row (computed once)."""
    if f.entries is None:
        assert f.valid is not None
        rows = len(f.codes)
        r, c = np.nonzero(f.valid)
        s = np.sort(f.codes[r, c].astype(np.int64) * rows + r)
        f.entries = ((s % rows).astype(np.int32), (s // rows).astype(np.int32))
    return f.entries


def _joint_single(fa: _Feature, fb: _Feature, rows: int, dense_limit: int | None) -> float:
    """Joint entropy of two single-valued features (a contingency table)."""
    if fa.unique or fb.unique:  # an id determines the other feature: H(X, Y) = H(id) exactly
        return fa.entropy if fa.unique else fb.entropy
    keys = fa.codes[:, 0].astype(np.int64) * fb.card + fb.codes[:, 0]
    if fa.card * fb.card <= _dense_limit(rows, dense_limit):
        return _entropy(np.bincount(keys), rows)
    return _entropy(_aggregate(keys, None)[1], rows)


def _pair_grid(fa: _Feature, fb: _Feature, rows: np.ndarray | slice, xa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Int64 joint codes ``x · card_b + y`` of the valid value pairs of some rows (row-major), and
    the ``a·b`` of each pair's row. ``xa`` (r, la) holds bag feature ``fa``'s codes of the ``rows``
    (a slice, or indices): whole bags, or one value per row (``la == 1``); ``fb``'s bags form the grid.
    """
    assert fa.lens is not None and fa.valid is not None

    def take(arr: np.ndarray) -> np.ndarray:
        return arr[rows] if isinstance(rows, slice) else np.take(arr, rows, axis=0)

    len_b = take(fb.lens) if fb.lens is not None else 1
    grid = (xa.astype(np.int64) * fb.card)[:, :, None] + take(fb.codes)[:, None, :]
    ab = take(fa.lens) * len_b
    va = take(fa.valid)[:, :, None] if xa.shape[1] > 1 else None  # whole bags of fa: mask them
    vb = take(fb.valid)[:, None, :] if fb.valid is not None else None
    if va is None or vb is None:
        ok = va if va is not None else vb
        if ok is None:
            return grid.reshape(-1), ab
    else:
        ok = va & vb
    return grid[np.broadcast_to(ok, grid.shape)], np.repeat(ab, ab if va is not None else len_b)


def _joint_entropy(fa: _Feature, fb: _Feature, rows: int, dense_limit: int | None, chunk: int) -> float:
    """Entropy of the joint distribution of two features (row mass spread over value pairs)."""
    if fa.valid is None and fb.valid is None:
        return _joint_single(fa, fb, rows, dense_limit)
    if fa.codes.shape[1] < fb.codes.shape[1]:  # fa: a bag feature (the longer one)
        fa, fb = fb, fa
    assert fa.lens is not None
    la, lb = fa.codes.shape[1], fb.codes.shape[1]
    n_pairs = int(fa.lens.sum() if fb.lens is None else fa.lens @ fb.lens)
    space = fa.card * fb.card
    if space <= _dense_limit(n_pairs, dense_limit):  # one bincount table; row chunks in any order
        acc = np.zeros(space)
        step = max(1, chunk // (la * lb))
        for r0 in range(0, rows, step):
            sl = slice(r0, r0 + step)
            keys, ab = _pair_grid(fa, fb, sl, fa.codes[sl])
            acc += np.bincount(keys, weights=1.0 / ab, minlength=space)
        return _entropy(acc, rows)
    # sort: walk fa's values in code order, so chunks hold disjoint joint codes, except that the
    # last code x of a chunk may go on in the next one: its masses carry over. Memory O(chunk).
    erow, ecode = _sorted_entries(fa)
    step = max(1, chunk // lb)
    h = 0.0
    carry_k, carry_m = np.zeros(0, np.int64), np.zeros(0)
    for e0 in range(0, len(erow), step):
        r, x = erow[e0:e0 + step], ecode[e0:e0 + step]
        k, m = _aggregate(*_pair_grid(fa, fb, r, x[:, None]))
        if len(carry_k):  # merge the carried code's masses into this chunk's first code
            cut = int(np.searchsorted(k, (int(x[0]) + 1) * fb.card))
            k_c, inverse = np.unique(np.concatenate([carry_k, k[:cut]]), return_inverse=True)
            m_c = np.bincount(inverse.reshape(-1), weights=np.concatenate([carry_m, m[:cut]]), minlength=len(k_c))
            k, m = np.concatenate([k_c, k[cut:]]), np.concatenate([m_c, m[cut:]])
        last = e0 + step >= len(erow)
        cut = len(k) if last else int(np.searchsorted(k, int(x[-1]) * fb.card))
        h += _plogp(m[:cut], rows)
        carry_k, carry_m = k[cut:], m[cut:]
    return max(h, 0.0)


def _mutual_information(features: Mapping[str, np.ndarray], *, dense_limit: int | None = None,
                        chunk: int = _CHUNK) -> MIResult:
    """`mutual_information` with its counting strategy exposed (for tests).

    ``dense_limit``: joint code spaces up to this size are counted with bincount, larger ones by
    sorting (default ``min(2^24, max(4 · value pairs, 2^16))``; 0 forces the sort). ``chunk``:
    value pairs per chunk of rows for bag features.
    """
    names = [str(n) for n in features]
    if len(set(names)) != len(names):
        raise ValueError("feature names must be distinct")
    rows: int | None = None
    prepared: list[_Feature] = []
    for name, arr in features.items():
        f = _prepare(str(name), arr, rows)
        rows = f.codes.shape[0]
        prepared.append(f)
    k = len(names)
    if k and not rows:
        raise ValueError("mutual information needs at least one catalog row")
    ent = np.array([f.entropy for f in prepared], dtype=np.float64)
    mi = np.diag(ent)
    for i in range(k):
        for j in range(i + 1, k):
            if ent[i] == 0.0 or ent[j] == 0.0:  # a constant feature shares no information
                continue
            h_joint = _joint_entropy(prepared[i], prepared[j], int(rows or 0), dense_limit, chunk)
            # I = H(X) + H(Y) − H(X, Y); rounding can leave it a hair outside [0, min(H)]
            mi[i, j] = mi[j, i] = min(max(ent[i] + ent[j] - h_joint, 0.0), ent[i], ent[j])
    denom = np.sqrt(np.outer(ent, ent))
    nmi = np.clip(np.divide(mi, denom, out=np.zeros_like(mi), where=denom > 0), 0.0, 1.0)
    np.fill_diagonal(nmi, (ent > 0).astype(np.float64))
    return MIResult(features=names, mi=mi, nmi=nmi, entropy=ent)


def mutual_information(features: Mapping[str, np.ndarray]) -> MIResult:
    """Exact pairwise MI (paper eq. 4), normalized MI and entropies over the catalog rows.

    Each row's unit mass is spread evenly over the value pairs of its two bags (``1/(a·b)`` each);
    an empty row is the value "missing" (id 0). ``MI(i, i) := H(i)``; ``nmi = MI / sqrt(H_i·H_j)``
    (scikit-learn's geometric normalization), 0 when either entropy is 0 (scikit-learn gives 1 for
    two constant labelings). Nats. Details in the module docstring.

    Args:
        features: ordered ``{name: int array [rows, max_len]}`` of encoded sparse features
            (0 = padding, 1 = OOV, values >= 2; a row of zeros is missing; 1-D = single-valued).

    Returns:
        The `MIResult`: symmetric, non-negative, ``MI <= min(H_i, H_j)``, nmi in [0, 1].

    Raises:
        ValueError: a feature is not an integer 2-D array, has negative ids, the row counts
            differ, or there are no rows.
    """
    return _mutual_information(features)


def catalog_mi(store: Any, *, mask_size: int | None = None, normalized: bool = False) -> tuple[MIResult, dict[str, Any]]:
    """MI over a `sslkit.data.store.FeatureStore`'s sparse item features, and ``to_json(mask_size, normalized)``."""
    feats = {n: np.asarray(store.items.features[n]) for n, spec in store.items.specs.items() if not spec.dense}
    result = mutual_information(feats)
    return result, result.to_json(mask_size=mask_size, normalized=normalized)


def plot_heatmap(result: MIResult, path: str | os.PathLike[str], normalized: bool = False) -> None:
    """Write a heatmap of the MI (``normalized``: normalized MI) matrix to ``path`` atomically.

    The image format follows the suffix (PNG without one); the figure is saved to a temp file in the
    same directory, then renamed over ``path``.

    Raises:
        PlotDependencyError: matplotlib is missing (an `ImportError`).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotDependencyError("plotting needs matplotlib", hint="install with: pip install 'sslkit[plot]'") from None
    mat = result.nmi if normalized else result.mi
    k = len(result.features)
    fig, ax = plt.subplots(figsize=(1.5 + 0.7 * k, 1.0 + 0.6 * k))
    try:
        im = ax.imshow(mat, cmap="viridis", vmin=0.0, vmax=1.0 if normalized else None)
        ax.set_xticks(range(k), result.features, rotation=45, ha="right")
        ax.set_yticks(range(k), result.features)
        top = float(mat.max()) if mat.size else 0.0
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="k" if mat[i, j] > 0.6 * top else "w")
        ax.set_title("normalized MI: MI / sqrt(H_i·H_j)" if normalized else "mutual information (nats)")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        from sslkit.data.io import named_errors

        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        try:
            with named_errors(out), os.fdopen(fd, "wb") as fh:
                fig.savefig(fh, format=out.suffix.lstrip(".").lower() or "png", dpi=120)
            os.chmod(tmp, 0o644)
            os.replace(tmp, out)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    finally:
        plt.close(fig)
