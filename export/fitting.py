"""The one training loop: shuffled mini-batches, Adam, a progress bar with the running loss."""

from __future__ import annotations

from collections.abc import Callable

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
) -> float:
    """Train ``model`` in place; ``batch_loss(indices)`` is the loss of those samples.

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
        bar.set_postfix(loss=f"{loss_value:.4f}", samples=samples)
    model.eval()
    return loss_value
