"""ASGNet's G-Net: below a confidence threshold, a learned gate fuses V-Net information into
S-Net's semantic features; above it, the semantic features pass as they are; then the classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional


@dataclass(frozen=True)
class GNetConfig:
    threshold: float = 0.9  # S-Net confidence below which V-Net information is fused in
    hidden: int = 64
    # G-Net trains on precomputed S-Net and V-Net outputs, so epochs cost milliseconds: many
    # small steps and a long patience, since the gate first has to learn to open.
    epochs: int = 150
    patience: int = 25  # epochs without a better validation F1 before stopping
    batch_size: int = 32
    learning_rate: float = 3e-3
    seed: int = 0


class GNet(nn.Module):
    """(S-Net features, S-Net confidence, V-Net latent) -> (class probabilities, confidence)."""

    def __init__(self, info_dim: int, latent_dim: int, classes: int, config: GNetConfig) -> None:
        super().__init__()
        self.lift = nn.Sequential(nn.Linear(latent_dim, info_dim), nn.Tanh())  # into info space
        self.gate = nn.Linear(2 * info_dim, info_dim)
        self.classifier = nn.Sequential(
            nn.Linear(info_dim, config.hidden), nn.ReLU(), nn.Linear(config.hidden, classes)
        )
        self.register_buffer("threshold", torch.tensor(config.threshold))

    def fuse(self, features: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Per dimension, the gate decides how much statistical information replaces semantic."""
        stats = self.lift(latent)
        gate = torch.sigmoid(self.gate(torch.cat([features, stats], dim=1)))
        return (1 - gate) * features + gate * stats

    def route(
        self, features: torch.Tensor, confidence: torch.Tensor, latent: torch.Tensor
    ) -> torch.Tensor:
        return torch.where(confidence < self.threshold, self.fuse(features, latent), features)

    def forward(
        self, features: torch.Tensor, confidence: torch.Tensor, latent: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        probs = torch.softmax(self.classifier(self.route(features, confidence, latent)), dim=1)
        return probs, probs.max(dim=1, keepdim=True).values

    def loss(
        self,
        features: torch.Tensor,
        confidence: torch.Tensor,
        latent: torch.Tensor,
        labels: torch.Tensor,
        weights: torch.Tensor,
    ) -> torch.Tensor:
        """Cross-entropy of the served route plus that of the fused features: after fine-tuning,
        S-Net is confident on nearly every training unit, so the gate would otherwise see almost
        nothing to learn from; the classifier learns both kinds of input it will be served."""
        routed = self.classifier(self.route(features, confidence, latent))
        fused = self.classifier(self.fuse(features, latent))
        ce = functional.cross_entropy(routed, labels, reduction="none")
        ce = ce + functional.cross_entropy(fused, labels, reduction="none")
        return (ce * weights).sum() / weights.sum()


class LatentClassifier(nn.Module):
    """V-Net alone (the ablation): the same classifier over the latent code only."""

    def __init__(self, latent_dim: int, classes: int, hidden: int) -> None:
        super().__init__()
        self.classifier = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, classes)
        )

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.classifier(latent), dim=1)
