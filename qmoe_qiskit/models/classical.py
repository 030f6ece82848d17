"""Classical routers (softmax over experts) and experts (class logits)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LinearRouter", "MLPRouter", "LinearExpert", "MLPExpert"]


class LinearRouter(nn.Module):
    """P(expert | x) = softmax(W x + b)."""

    def __init__(self, num_features: int, num_experts: int):
        super().__init__()
        self.num_experts = num_experts
        self.linear = nn.Linear(num_features, num_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.linear(x), dim=-1)


class MLPRouter(nn.Module):
    """P(expert | x) from a one-hidden-layer ReLU network of width ``hidden``."""

    def __init__(self, num_features: int, num_experts: int, hidden: int):
        super().__init__()
        self.num_experts = num_experts
        self.net = nn.Sequential(
            nn.Linear(num_features, hidden), nn.ReLU(), nn.Linear(hidden, num_experts)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=-1)


class LinearExpert(nn.Linear):
    """Class logits ``W x + b``."""


class MLPExpert(nn.Sequential):
    """Class logits from a one-hidden-layer ReLU network of width ``hidden``."""

    def __init__(self, num_features: int, num_classes: int, hidden: int = 8):
        super().__init__(nn.Linear(num_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
