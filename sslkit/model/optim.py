"""A lean Adagrad for sparse embedding gradients (no sparse-tensor arithmetic, no dense pass).

`torch.optim.Adagrad` handles sparse gradients, but through generic sparse-tensor ops; this does
the same update (TF/paper semantics: accumulator starts at `initial_accumulator_value`) with three
index ops on the touched rows only.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch


class SparseAdagrad(torch.optim.Optimizer):
    """Adagrad: acc += g²; p -= lr · g / (sqrt(acc) + eps), on the rows present in a sparse grad."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 0.01,
                 initial_accumulator_value: float = 0.1, eps: float = 1e-10) -> None:
        super().__init__(params, {"lr": lr, "initial_accumulator_value": initial_accumulator_value, "eps": eps})
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["sum"] = torch.full_like(p, group["initial_accumulator_value"],
                                                       memory_format=torch.preserve_format)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            lr, eps = group["lr"], group["eps"]
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                acc = self.state[p]["sum"]
                if not g.is_sparse:
                    acc.addcmul_(g, g)
                    p.addcdiv_(g, acc.sqrt().add_(eps), value=-lr)
                    continue
                g = g.coalesce()
                idx, val = g.indices()[0], g.values()
                rows = acc.index_select(0, idx).addcmul_(val, val)
                acc.index_copy_(0, idx, rows)
                p.index_add_(0, idx, val / rows.sqrt().add_(eps), alpha=-lr)
