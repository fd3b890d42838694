"""The one training loop: shuffled mini-batches, Adam, a progress bar with the running loss,
and optional early stopping on a validation score with the best checkpoint kept."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm


def fit(
    model: torch.nn.Module,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    samples: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    rng: np.random.Generator,
    desc: str,
    progress: bool = True,
    stopping: EarlyStopping | None = None,
) -> float:
    """Train ``model`` in place; ``batch_loss(indices)`` is the loss of those samples.

    With ``stopping``, its score is taken after every epoch (model in eval mode), training ends
    once it has not improved for ``patience`` epochs, and the best epoch's weights are restored.
    Returns the last epoch's mean batch loss; leaves the model in eval mode.
    """
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    loss_value = float("nan")
    bar = tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress)
    model.train()
    for _ in bar:
        order = torch.from_numpy(rng.permutation(samples))
        total, batches = 0.0, 0
        for i in range(0, samples, batch_size):
            optimiser.zero_grad()
            loss = batch_loss(order[i : i + batch_size])
            loss.backward()
            optimiser.step()
            total += loss.item()
            batches += 1
        loss_value = total / max(batches, 1)
        postfix = {"loss": f"{loss_value:.4f}", "samples": samples}
        if stopping is not None:
            model.eval()
            done = stopping.update(model)
            model.train()
            postfix["val"] = f"{stopping.scores[-1]:.4f}"
            postfix["best"] = f"{stopping.best_score:.4f}@{stopping.best_epoch + 1}"
        bar.set_postfix(postfix)
        if stopping is not None and done:
            break
    model.eval()
    if stopping is not None:
        stopping.restore(model)
    return loss_value


@dataclass
class EarlyStopping:
    """Scores the model after each epoch (higher is better) and keeps the best weights.

    An epoch that ties the best replaces it: on a small validation set F1 reaches its plateau
    early while the class probabilities keep sharpening, and the later, surer model is the one
    an operator wants to read probabilities from."""

    score: Callable[[], float]
    patience: int = 3
    scores: list[float] = field(default_factory=list)
    best_score: float = -math.inf
    best_epoch: int = -1
    best_state: dict[str, Any] | None = None

    def update(self, model: torch.nn.Module) -> bool:
        """Record this epoch; True when training should stop."""
        with torch.no_grad():
            value = float(self.score())
        self.scores.append(value)
        if value >= self.best_score:
            self.best_score, self.best_epoch = value, len(self.scores) - 1
            self.best_state = copy.deepcopy(model.state_dict())
        return len(self.scores) - 1 - self.best_epoch >= self.patience

    def restore(self, model: torch.nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
