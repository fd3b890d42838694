"""ASGNet's V-Net (Wang et al., arXiv 2402.11841): a variational autoencoder over each unit's
statistical vector; its latent mean is the unit's statistical representation.

The statistical vector counts each log key in the unit (a session or a message window). Counts
enter as log1p(count): a key seen 300 times is not 100 times more telling than one seen 3 times,
and the log keeps the Gaussian decoder's squared error from being ruled by the chattiest keys.
Training is unsupervised (the ELBO: reconstruction error plus the KL divergence to N(0, I)).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from export.fitting import fit


@dataclass(frozen=True)
class VNetConfig:
    hidden: int = 128
    latent: int = 32
    beta: float = 1.0  # weight of the KL term
    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 1e-3
    seed: int = 0


class VNet(nn.Module):
    """Statistical vector -> (mean, log-variance) of the latent code; decoder for training."""

    def __init__(self, size: int, config: VNetConfig) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(size, config.hidden), nn.ReLU())
        self.mean = nn.Linear(config.hidden, config.latent)
        self.log_var = nn.Linear(config.hidden, config.latent)
        self.decoder = nn.Sequential(
            nn.Linear(config.latent, config.hidden), nn.ReLU(), nn.Linear(config.hidden, size)
        )

    def encode(self, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(counts)
        return self.mean(hidden), self.log_var(hidden)

    def elbo_loss(self, counts: torch.Tensor, beta: float) -> torch.Tensor:
        """Negative ELBO per unit: squared reconstruction error + beta * KL(q(z|x) || N(0, I))."""
        mean, log_var = self.encode(counts)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        reconstruction = ((self.decoder(z) - counts) ** 2).sum(dim=1)
        kl = -0.5 * (1 + log_var - mean**2 - log_var.exp()).sum(dim=1)
        return (reconstruction + beta * kl).mean()

    def forward(self, counts: torch.Tensor) -> torch.Tensor:
        """What is served: the latent mean (deterministic)."""
        return self.encode(counts)[0]


@dataclass(frozen=True)
class VNetReport:
    units: int
    epochs: int
    final_loss: float
    seconds: float


def train_vnet(
    counts: np.ndarray, config: VNetConfig, progress: bool = True
) -> tuple[VNet, VNetReport]:
    """Unsupervised: every unit's vector, normal or not (labels are for the classifier)."""
    if len(counts) == 0:
        raise ValueError("no units to train V-Net on")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = VNet(counts.shape[1], config)
    x = torch.from_numpy(np.ascontiguousarray(counts, dtype=np.float32))
    start = time.perf_counter()
    loss = fit(
        model,
        lambda idx: model.elbo_loss(x[idx], config.beta),
        len(x),
        config.epochs,
        config.batch_size,
        config.learning_rate,
        rng,
        "train asgnet_vnet",
        progress,
    )
    return model, VNetReport(len(x), config.epochs, loss, time.perf_counter() - start)
