"""The SSL batch's false negatives: distinct items where the catalog allows, accidental hits masked,
and the logged diagnostics (duplicate rate, in-batch top-1 accuracy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sslkit.config import load_config
from sslkit.model.losses import duplicate_share, in_batch_top1, info_nce_loss, spread_out_loss
from sslkit.data.store import load_or_build
from sslkit.training.train import _sample_items, build_setup, train, training_mi
from test_losses import naive_softmax_ce, unit


@pytest.mark.parametrize("ids", [[0, 1, 2, 3, 4, 5], [7, 3, 7, 1, 3, 7], [2, 2, 2, 2, 2, 2]])
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_info_nce_masks_accidental_hits_like_a_naive_loop(ids: list[int], tau: float) -> None:
    z1, z2 = unit(6, 4, 11), unit(6, 4, 12)
    item_ids = torch.tensor(ids)
    got = info_nce_loss(z1, z2, temperature=tau, item_ids=item_ids).item()
    assert got == pytest.approx(naive_softmax_ce(z1, z2, tau, ids=ids), rel=1e-5, abs=1e-6)
    assert spread_out_loss(z1, temperature=tau, item_ids=item_ids).item() == pytest.approx(
        naive_softmax_ce(z1, z1, tau, ids=ids), rel=1e-5, abs=1e-6)
    if len(set(ids)) < len(ids):  # masking really changes the value
        assert abs(got - info_nce_loss(z1, z2, temperature=tau).item()) > 1e-4


def test_the_diagonal_is_never_masked() -> None:
    z1, z2 = unit(5, 3, 1), unit(5, 3, 2)
    same = torch.zeros(5, dtype=torch.long)  # every row the same item: only the positive is left
    assert info_nce_loss(z1, z2, temperature=0.2, item_ids=same).item() == pytest.approx(0.0, abs=1e-6)
    # a duplicate whose second view equals the positive: masked, it no longer counts as a negative
    z = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), dim=1)
    ids = torch.tensor([4, 4, 9])
    row0 = -torch.log_softmax(torch.tensor([1.0, 0.0]) / 0.5, 0)[0].item()  # rows 0, 1: own column and column 2
    row2 = -torch.log_softmax(torch.tensor([0.0, 0.0, 1.0]) / 0.5, 0)[2].item()  # row 2: all three columns
    assert info_nce_loss(z, z, temperature=0.5, item_ids=ids).item() == pytest.approx((2 * row0 + row2) / 3, rel=1e-6)


def test_masked_info_nce_gradient_matches_autograd() -> None:
    z1 = unit(8, 5, 3).double().requires_grad_()
    z2 = unit(8, 5, 4).double().requires_grad_()
    ids = torch.tensor([0, 1, 0, 2, 3, 1, 4, 0])
    info_nce_loss(z1, z2, temperature=0.3, item_ids=ids).backward()
    a, b = z1.detach().clone().requires_grad_(), z2.detach().clone().requires_grad_()
    hits = (ids[:, None] == ids[None, :]) & ~torch.eye(8, dtype=torch.bool)
    ref = F.cross_entropy((a @ b.T / 0.3).masked_fill(hits, float("-inf")), torch.arange(8))
    ref.backward()
    assert torch.allclose(z1.grad, a.grad, atol=1e-12) and torch.allclose(z2.grad, b.grad, atol=1e-12)


def test_in_batch_top1_and_duplicate_share_by_hand() -> None:
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])
    z2 = torch.tensor([[0.6, 0.8], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    # row 0: own 0.6 < 1.0 (col 2, col 3) → wrong; row 1: own 1 → right; row 2: own 1 → right;
    # row 3: own 0.6 < 0.8 (col 1) → wrong
    assert in_batch_top1(z1, z2).item() == pytest.approx(0.5)
    # rows 0, 2 and 3 hold item 5: row 0's rivals 2 and 3 are accidental hits; row 3's rival (col 1) is not
    assert in_batch_top1(z1, z2, item_ids=torch.tensor([5, 1, 5, 5])).item() == pytest.approx(0.75)
    assert duplicate_share(torch.tensor([3, 1, 3, 2, 9, 9, 9, 0])).item() == pytest.approx(5 / 8)
    assert duplicate_share(torch.tensor([4, 2, 7])).item() == 0.0
    assert duplicate_share(torch.tensor([1])).item() == 0.0


def _setup(data: Path, *overrides: str):
    cfg = load_config(data / "schema.yaml", ["train.device=cpu", "train.batch_size=128", *overrides])
    store = load_or_build(cfg)
    return cfg, store, build_setup(cfg, store, None)


@pytest.mark.parametrize("sampling", ["uniform", "popularity"])
def test_ssl_batch_is_distinct_when_the_catalog_allows(data: Path, sampling: str) -> None:
    _, store, s = _setup(data, "ssl.aug=no_mask", "ssl.batch_size=200", f"ssl.item_sampling={sampling}")
    assert store.items.rows == 300 and s.ssl_distinct
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([_sample_items(s, 200, gen) for _ in range(50)])  # (50, 200)
    assert all(len(row.unique()) == 200 for row in draws)
    assert int(draws.min()) >= 0 and int(draws.max()) < 300
    counts = torch.bincount(draws.flatten(), minlength=300).float()
    if sampling == "uniform":  # every item is in 2/3 of the batches: 33.3 ± 3.3 of 50
        assert counts.min() >= 20 and counts.max() <= 47
    else:  # never an item without training pairs; popular items far more often than rare ones
        train_counts = torch.bincount(s.train_pairs[:, 1], minlength=300)
        assert counts[train_counts == 0].sum() == 0
        top, rare = train_counts.argsort(descending=True)[:30], train_counts.argsort()[:60]
        assert counts[top].mean() > 2 * counts[rare].mean()


def test_keep_draws_with_replacement_and_a_small_catalog_falls_back(data: Path) -> None:
    _, _, keep = _setup(data, "ssl.aug=no_mask", "ssl.batch_size=200", "ssl.false_negatives=keep")
    assert not keep.ssl_distinct
    draws = _sample_items(keep, 200, torch.Generator().manual_seed(0))
    assert len(draws.unique()) < 200  # i.i.d.: 200 of 300 items collide (~28% duplicate rows)
    _, _, small = _setup(data, "ssl.aug=no_mask", "ssl.batch_size=400", "ssl.false_negatives=keep")
    assert not small.ssl_distinct and small.ssl_batch == 300  # batch > catalog (300): capped, i.i.d. draws
    small_draws = _sample_items(small, 300, torch.Generator().manual_seed(1))
    assert small_draws.shape == (300,) and int(small_draws.max()) < 300 and len(small_draws.unique()) < 300


def _log(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]


@pytest.mark.parametrize("mode,dup", [("avoid", False), ("keep", True)])
def test_metrics_log_the_duplicate_rate_and_top1(data: Path, mode: str, dup: bool) -> None:
    cfg = load_config(data / "schema.yaml", ["train.device=cpu", "train.batch_size=128", "train.steps=4",
                                             "train.log_every=2", "ssl.aug=cfm", "ssl.batch_size=256",
                                             f"ssl.false_negatives={mode}", "train.eval_queries=10"])
    store = load_or_build(cfg)
    train(cfg, store, run_dir=data / mode, mi=training_mi(cfg, store, lambda _: None))
    recs = _log(data / mode)
    assert [r["step"] for r in recs] == [2, 4]
    for r in recs:
        assert 0.0 <= r["ssl_top1"] <= 1.0
        # 256 of 300 items: none repeated when drawn without replacement; i.i.d. draws repeat ~57% of rows
        assert (r["ssl_dup_rate"] > 0.4) if dup else (r["ssl_dup_rate"] == 0.0)


def test_so_masks_duplicates_of_a_small_catalog(data: Path) -> None:
    cfg, _, capped = _setup(data, "ssl.aug=so", "ssl.batch_size=512")
    assert capped.ssl_batch == 300 and capped.ssl_distinct  # capped at the catalog: no duplicates to mask
    from sslkit.training.train import step_loss

    s = capped.__class__(**{**capped.__dict__, "ssl_batch": 512, "ssl_distinct": False})  # the uncapped path

    gen = torch.Generator().manual_seed(3)
    _, parts = step_loss(s, torch.arange(128), gen, stats=True)
    assert parts["ssl_dup_rate"].item() > 0.5  # 512 rows from 300 items
    assert parts["ssl_top1"].item() == 1.0  # spread-out: a row's own copy is its maximum once hits are ignored
    # masked: the loss stays below the unmasked one, where each duplicate is a positive-strength negative
    _, unmasked = step_loss(s.__class__(**{**s.__dict__, "cfg": cfg.model_copy(update={
        "ssl": cfg.ssl.model_copy(update={"false_negatives": "keep"})})}), torch.arange(128),
        torch.Generator().manual_seed(3))
    assert parts["ssl"].item() < unmasked["ssl"].item() - 0.01
