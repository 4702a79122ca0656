"""Exact pairwise mutual information between item features over the catalog (paper eq. 4).

Each catalog row carries unit mass. A multi-valued (or text) feature spreads a row's mass evenly
over its values; for a pair of features the row's mass is spread over the cross product of the two
bags (1/(a·b) per value pair; a value repeated in a bag counts once per occurrence), so joint and
marginal distributions stay consistent. A row with no
value counts as one "missing" value. MI is in nats; MI(i, i) := H(i). Normalized MI is
MI / sqrt(H_i · H_j) (geometric mean, as scikit-learn's `average_method="geometric"`).
Counting is vectorized: integer joint codes + `bincount` (or a sort for huge code spaces).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

_DENSE_LIMIT = 1 << 22  # joint code space counted with bincount up to this size (else a sort)
_CHUNK = 1 << 23  # value pairs per chunk (bounds memory for long bags)


@dataclass(frozen=True)
class MIResult:
    features: list[str]
    mi: np.ndarray  # (F, F) nats
    nmi: np.ndarray  # (F, F) in [0, 1]
    entropy: np.ndarray  # (F,) nats

    def to_json(self, mask_size: int | None = None, normalized: bool = False) -> dict[str, Any]:
        size = mask_size or default_mask_size(len(self.features))
        sets = mask_sets(self.nmi if normalized else self.mi, self.features, size)
        return {"features": list(self.features), "mi": self.mi.tolist(), "nmi": self.nmi.tolist(),
                "entropy": self.entropy.tolist(), "mask_sets": sets,
                "mask_size": min(size, max(len(self.features) - 1, 1)), "measure": "nmi" if normalized else "mi"}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "MIResult":
        feats = list(obj["features"])
        mi, nmi, ent = np.asarray(obj["mi"], float), np.asarray(obj["nmi"], float), np.asarray(obj["entropy"], float)
        k = len(feats)
        if mi.shape != (k, k) or nmi.shape != (k, k) or ent.shape != (k,):
            raise ValueError(f"MI JSON shapes do not match its {k} features")
        return cls(features=feats, mi=mi, nmi=nmi, entropy=ent)


def default_mask_size(k: int) -> int:
    """floor(k/2), clamped to [1, k-1]: the paper's aim of two halves."""
    return max(1, min(k // 2, k - 1)) if k > 1 else 1


def mask_sets(matrix: np.ndarray, features: Sequence[str], mask_size: int | None = None) -> dict[str, list[str]]:
    """CFM masking set per seed: the seed, then its most correlated features, |F_m| = mask_size.

    Ties are broken by feature order.
    """
    k = len(features)
    size = max(1, min(mask_size or default_mask_size(k), max(k - 1, 1)))
    out = {}
    for s in range(k):
        others = [j for j in range(k) if j != s]
        others.sort(key=lambda j: (-matrix[s, j], j))
        out[features[s]] = [features[s]] + [features[j] for j in others[: size - 1]]
    return out


def _bags(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Padded ids → (ids with missing rows as a single 0, valid mask). Shapes (rows, L)."""
    ids = np.asarray(ids)
    valid = ids != 0
    empty = ~valid.any(1)
    valid[:, 0] |= empty
    return ids, valid


def _marginal(ids: np.ndarray, valid: np.ndarray) -> np.ndarray:
    w = valid / valid.sum(1, keepdims=True)
    return np.bincount(ids[valid].astype(np.int64), weights=w[valid]) / len(ids)


def _joint(a: np.ndarray, va: np.ndarray, b: np.ndarray, vb: np.ndarray, card_b: int) -> np.ndarray:
    """Joint probabilities of the value pairs that occur (any order)."""
    rows = len(a)
    la, lb = a.shape[1], b.shape[1]
    single = la == 1 and lb == 1
    card_a = int(a.max()) + 1
    dense = card_a * card_b <= _DENSE_LIMIT
    step = max(1, _CHUNK // (la * lb))
    acc = np.zeros(card_a * card_b) if dense else None
    keys_all, w_all = [], []
    for r0 in range(0, rows, step):
        sa, sb, sva, svb = a[r0:r0 + step], b[r0:r0 + step], va[r0:r0 + step], vb[r0:r0 + step]
        if single:
            keys, w = sa[:, 0].astype(np.int64) * card_b + sb[:, 0], None
        else:
            ok = sva[:, :, None] & svb[:, None, :]
            wr = 1.0 / (sva.sum(1) * svb.sum(1))
            keys = (sa[:, :, None].astype(np.int64) * card_b + sb[:, None, :])[ok]
            w = np.broadcast_to(wr[:, None, None], ok.shape)[ok]
        if dense:
            acc += np.bincount(keys, weights=w, minlength=card_a * card_b)
        else:
            keys_all.append(keys); w_all.append(np.ones(len(keys)) if w is None else w)
    if dense:
        return acc[acc > 0] / rows  # type: ignore[index]
    if single:  # unit weights: a plain sort and run lengths (no argsort + gather)
        keys = np.sort(np.concatenate(keys_all))
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        return np.diff(np.r_[starts, len(keys)]) / rows
    keys, w = np.concatenate(keys_all), np.concatenate(w_all)
    order = np.argsort(keys, kind="stable")
    keys, w = keys[order], w[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return np.add.reduceat(w, starts) / rows


def _plogp(p: np.ndarray) -> float:
    p = p[p > 0]
    return float((p * np.log(p)).sum())


def mutual_information(features: Mapping[str, np.ndarray]) -> MIResult:
    """Exact MI, normalized MI and entropies for every pair of (sparse, encoded) features."""
    names = list(features)
    bags = [_bags(features[n]) for n in names]
    margs = [_marginal(ids, v) for ids, v in bags]
    ent = np.array([-_plogp(m) for m in margs])
    # a single-valued feature whose every value occurs once (an id) determines any other feature
    # of its row: then H(X, Y) = H(X) exactly, and no joint count is needed
    unique = [ids.shape[1] == 1 and bool(np.bincount(ids[:, 0].astype(np.int64)).max() == 1) for ids, _ in bags]
    k = len(names)
    mi = np.zeros((k, k))
    for i in range(k):
        mi[i, i] = ent[i]
        for j in range(i + 1, k):
            (a, va), (b, vb) = bags[i], bags[j]
            # I = Σ p log p(x,y) − Σ p log p(x) − Σ p log p(y) = H(X) + H(Y) − H(X,Y)
            if (unique[i] or unique[j]) and a.shape[1] == 1 and b.shape[1] == 1:
                h_joint = ent[i] if unique[i] else ent[j]
            else:
                h_joint = -_plogp(_joint(a, va, b, vb, int(b.max()) + 1))
            value = ent[i] + ent[j] - h_joint
            mi[i, j] = mi[j, i] = max(value, 0.0)
    denom = np.sqrt(np.outer(ent, ent))
    nmi = np.divide(mi, denom, out=np.zeros_like(mi), where=denom > 0)
    return MIResult(features=names, mi=mi, nmi=np.clip(nmi, 0.0, 1.0), entropy=ent)


def catalog_mi(store: Any, *, mask_size: int | None = None, normalized: bool = False) -> tuple[MIResult, dict[str, Any]]:
    """MI over the catalog's sparse item features, and its JSON (with CFM mask sets)."""
    feats = {n: np.asarray(store.items.features[n]) for n, s in store.items.specs.items() if not s.dense}
    result = mutual_information(feats)
    return result, result.to_json(mask_size=mask_size, normalized=normalized)


def plot_heatmap(result: MIResult, path: str, *, normalized: bool = False) -> None:
    """Heatmap of (normalized) MI, written atomically as PNG."""
    from sslkit.plots import figure, save_figure

    mat = result.nmi if normalized else result.mi
    k = len(result.features)
    fig, ax = figure(figsize=(1.0 + 0.6 * k, 0.8 + 0.5 * k))
    im = ax.imshow(mat, cmap="viridis")
    ax.set_xticks(range(k), result.features, rotation=45, ha="right")
    ax.set_yticks(range(k), result.features)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w")
    ax.set_title("normalized MI" if normalized else "mutual information (nats)")
    fig.colorbar(im, ax=ax)
    save_figure(fig, path)
