"""The similar-incident search as a model: the k labelled training units nearest to a unit.

Exact squared L2 over every indexed S-Net embedding (what faiss's ``IndexFlatL2`` computes),
written as a small graph with the embeddings inside it, so Triton runs the search next to
S-Net (on the GPU where there is one) and the client needs no index of its own. A few thousand
units make one [batch, units, info] difference per request: cheap beside S-Net itself.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

NEAREST = 3  # units an alert names


class NearestUnits(nn.Module):
    """FEATURES [B, info] -> (row ids [B, k], squared L2 distances [B, k]), nearest first."""

    def __init__(self, embeddings: np.ndarray, k: int = NEAREST) -> None:
        super().__init__()
        if len(embeddings) == 0:
            raise ValueError("a similar-incident index needs at least one unit")
        self.register_buffer("embeddings", torch.from_numpy(np.asarray(embeddings, np.float32)))
        self.k = min(k, len(embeddings))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        difference = features[:, None, :] - self.embeddings[None, :, :]
        distances = (difference * difference).sum(dim=2)
        nearest, rows = torch.topk(distances, self.k, dim=1, largest=False, sorted=True)
        return rows, nearest
