"""Training loop guarantees: resume equivalence, clean interruption, NaN guard, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sslkit.training.checkpoint import read_checkpoint
from sslkit.config import load_config
from sslkit.errors import TrainingError
from sslkit.data.store import load_or_build
from sslkit.training.train import Interrupted, train, training_mi


def setup(data: Path, *overrides: str):
    cfg = load_config(data / "schema.yaml", ["ssl.aug=cfm", "train.batch_size=256", "train.epochs=2",
                                             "train.device=cpu", *overrides])
    store = load_or_build(cfg)
    return cfg, store, training_mi(cfg, store, lambda _: None)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run)["model"]


def test_resume_matches_uninterrupted_run(data: Path) -> None:
    cfg, store, mi = setup(data)
    train(cfg, store, run_dir=data / "full", mi=mi)
    calls = {"n": 0}

    def stop_after_5() -> bool:  # interrupt mid-epoch, after 5 steps
        calls["n"] += 1
        return calls["n"] > 5

    with pytest.raises(Interrupted):
        train(cfg, store, run_dir=data / "cut", mi=mi, should_stop=stop_after_5)
    assert read_checkpoint(data / "cut")["progress"]["step"] == 5
    train(cfg, store, run_dir=data / "cut", mi=mi, resume=True)
    a, b = weights(data / "full"), weights(data / "cut")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    full_log = (data / "full/metrics.jsonl").read_text().splitlines()
    cut_log = (data / "cut/metrics.jsonl").read_text().splitlines()
    strip = lambda lines: [ln.split('"examples_per_s"')[0] for ln in lines]  # noqa: E731 (timings differ)
    assert strip(full_log) == strip(cut_log)


def test_same_seed_same_model_different_seed_differs(data: Path) -> None:
    cfg, store, mi = setup(data, "train.steps=3")
    train(cfg, store, run_dir=data / "a", mi=mi)
    train(cfg, store, run_dir=data / "b", mi=mi)
    cfg2, _, _ = setup(data, "train.steps=3", "train.seed=1")
    train(cfg2, store, run_dir=data / "c", mi=mi)
    a, b, c = weights(data / "a"), weights(data / "b"), weights(data / "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, store, mi = setup(data)
    run = data / "nan"
    train(cfg, store, run_dir=run, mi=mi)  # a good run: 2 epochs
    good = weights(run)
    import sslkit.model.losses as losses

    monkeypatch.setattr(losses, "info_nce_loss", lambda z1, z2, temperature, **kw: (z1 * float("nan")).sum())
    cfg_more, _, _ = setup(data, "train.epochs=3")
    with pytest.raises(TrainingError, match=r"loss became nan at step \d+; the last good checkpoint is kept"):
        train(cfg_more, store, run_dir=run, mi=mi, resume=True)
    after = weights(run)
    assert all(torch.equal(good[k], after[k]) for k in good)


def test_resume_refuses_a_different_schema(data: Path) -> None:
    from sslkit.errors import CheckpointError

    cfg, store, mi = setup(data, "train.steps=2")
    train(cfg, store, run_dir=data / "r", mi=mi)
    cfg2, _, _ = setup(data, "train.steps=4", "model.hidden=[32,16]")
    with pytest.raises(CheckpointError, match="cannot resume: 'model' differs"):
        train(cfg2, store, run_dir=data / "r", mi=mi, resume=True)


def test_dense_and_sparse_table_gradients_train_the_same_model(data: Path) -> None:
    """Small tables get dense gradients for speed; Adagrad must not notice (zero rows stay put)."""
    from sslkit.training.train import build_setup, make_optimizers, train_step

    cfg, store, mi = setup(data, "train.batch_size=64", "ssl.batch_size=32", "ssl.aug=rfm")
    names = [n for n, sp in store.items.specs.items() if not sp.dense]
    sets = [[names.index(f) for f in mi["mask_sets"][n]] for n in names]
    models = []
    for sparse in (True, False):
        s = build_setup(cfg, store, sets)
        for emb in s.model.embeddings():
            emb.table.sparse = sparse
        s.optimizers = make_optimizers(s.model, cfg)  # dense tables join the fused dense optimizer
        assert len(s.optimizers) == (2 if sparse else 1)
        gen = torch.Generator().manual_seed(0)
        for step in range(4):
            train_step(s, torch.arange(step * 64, (step + 1) * 64), gen)
        models.append(s.model.state_dict())
    sparse_run, dense_run = models
    for key in sparse_run:
        assert torch.allclose(sparse_run[key], dense_run[key], atol=1e-5), key
    initial = build_setup(cfg, store, sets).model.state_dict()
    assert not torch.equal(sparse_run["item_embedding.default"], initial["item_embedding.default"])  # defaults learn


def test_summary_validation_is_of_the_final_step(data: Path) -> None:
    import json
    cfg, store, mi = setup(data, "train.steps=3", "train.eval_queries=30")  # 3 steps: no epoch end
    result = train(cfg, store, run_dir=data / "short", mi=mi)
    vals = [json.loads(ln) for ln in (data / "short/metrics.jsonl").read_text().splitlines() if "val_recall@10" in ln]
    assert [v["step"] for v in vals] == [3]
    summary = json.loads((data / "short/summary.json").read_text())
    assert summary["validation"] == result.validation == {k: v for k, v in vals[0].items() if k != "step"}


def test_bf16_precision_trains_deterministically_and_differs_from_fp32(data: Path) -> None:
    import json
    from sslkit.training.device import uses_bf16
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert uses_bf16("auto", cuda, native=False) and uses_bf16("auto", cpu, native=True)
    assert not uses_bf16("auto", cpu, native=False)
    assert uses_bf16("bf16", cpu, native=False) and not uses_bf16("fp32", cuda) and not uses_bf16("fp32", cpu, native=True)
    cfg, store, mi = setup(data, "train.steps=3", "train.precision=bf16")
    a = train(cfg, store, run_dir=data / "bf_a", mi=mi)
    train(cfg, store, run_dir=data / "bf_b", mi=mi)
    cfg32, _, _ = setup(data, "train.steps=3", "train.precision=fp32")
    train(cfg32, store, run_dir=data / "fp", mi=mi)
    wa, wb, w32 = weights(data / "bf_a"), weights(data / "bf_b"), weights(data / "fp")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], w32[k]) for k in wa)
    assert all(torch.isfinite(v).all() for v in wa.values() if v.is_floating_point())
    assert a.validation and json.loads((data / "bf_a/config.json").read_text())["train"]["precision"] == "bf16"
    # run.json says what the run trained in (config.json may say auto)
    assert [json.loads((data / r / "run.json").read_text())["precision"] for r in ("bf_a", "fp")] == ["bf16", "fp32"]


def test_nan_guard_without_per_step_checks_runs_before_every_checkpoint(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As on CUDA, where the loss is read only every log_every steps: a non-finite loss one step
    before an epoch's end (here a NaN value whose gradient stays finite, so later losses look fine)
    stops training at the epoch's end, before its checkpoint would be written."""
    import sslkit.model.losses as losses
    import sslkit.training.train as train_mod

    cfg, store, mi = setup(data, "train.log_every=1000")
    epoch = train_mod.build_setup(cfg, store, None).steps_per_epoch
    monkeypatch.setattr(train_mod, "_check_every_step", lambda device: False)
    calls = {"n": 0}
    real = losses.info_nce_loss

    def nan_value_once(z1, z2, **kw):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        out = real(z1, z2, **kw)
        return out + out.detach() * float("nan") if calls["n"] == epoch - 1 else out

    monkeypatch.setattr(losses, "info_nce_loss", nan_value_once)
    with pytest.raises(TrainingError, match=rf"a loss became non-finite by step {epoch}; no checkpoint was written yet"):
        train(cfg, store, run_dir=data / "nan", mi=mi)
    assert not (data / "nan/checkpoint.pt").exists()
