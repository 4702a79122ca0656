"""Early stopping on validation (`train.early_stopping`): watch one validation metric, keep the best
round's weights, say when `patience` rounds have passed without an improvement.

The loop validates on rank 0 only, so rank 0 decides; the loop shares the decision with `World.any`,
and only rank 0 keeps (and restores) the best weights, as only rank 0 writes the run directory.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from sslkit.config import Config


class EarlyStopping:
    """Best-so-far tracking for one run; its state travels in the checkpoint's progress (`state`)."""

    def __init__(self, cfg: Config) -> None:
        es = cfg.train.early_stopping
        self.metric = cfg.early_stopping_metric
        self.patience = int(es.patience or 0)
        self.min_delta = float(es.min_delta)
        self.best = -math.inf
        self.best_step: int | None = None
        self.best_validation: dict[str, float] = {}
        self.bad_rounds = 0
        self.stopped_step: int | None = None  # set when patience ran out
        self.ended_at: int | None = None  # the step training ended at (patience, or the last step)
        self.best_weights: dict[str, torch.Tensor] | None = None  # a CPU copy (rank 0)

    def observe(self, validation: dict[str, float], step: int, model: torch.nn.Module) -> bool:
        """Record one validation round; True when training should stop now. An empty `validation` (a rank
        other than 0) records nothing and says False."""
        if self.metric not in validation:
            return False
        value = validation[self.metric]
        if self.best_step is None or value > self.best + self.min_delta:
            self.best, self.best_step, self.best_validation, self.bad_rounds = value, step, dict(validation), 0
            self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            return False
        self.bad_rounds += 1
        return self.bad_rounds >= self.patience

    def restore(self, model: torch.nn.Module) -> bool:
        """Load the best round's weights into `model`; False when there are none (no round, or not rank 0)."""
        if self.best_weights is None:
            return False
        model.load_state_dict(self.best_weights)
        return True

    def state(self) -> dict[str, Any]:
        """For the checkpoint: the best round (weights included) and the rounds since."""
        return {"metric": self.metric, "best": self.best, "best_step": self.best_step,
                "best_validation": self.best_validation, "bad_rounds": self.bad_rounds,
                "stopped_step": self.stopped_step, "ended_at": self.ended_at, "best_weights": self.best_weights}

    def load(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's `state()` (resume)."""
        self.best, self.best_step = float(state["best"]), state["best_step"]
        self.best_validation, self.bad_rounds = dict(state["best_validation"]), int(state["bad_rounds"])
        self.stopped_step, self.best_weights = state["stopped_step"], state["best_weights"]
        self.ended_at = state.get("ended_at")

    def summary(self, step: int) -> dict[str, Any]:
        """What `summary.json` and the stop event record."""
        return {"best_step": self.best_step, "stopped_step": self.stopped_step if self.stopped_step is not None
                else step, "stopped_early": self.stopped_step is not None, "early_stopping_metric": self.metric,
                "best_validation": {self.metric.removeprefix("val_"): self.best} if self.best_step is not None else {}}
