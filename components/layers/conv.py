"""Depthwise causal short convolution over time (kernel 4 in Mamba2, DeltaNet, Titans) with a streaming state."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ShortConv(nn.Module):
    """y_t = sum_{i<kernel} w_i * x_{t-i} per channel. The state is the last kernel - 1 inputs, so
    processing a sequence in pieces equals one pass."""

    def __init__(self, channels: int, kernel: int = 4) -> None:
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv1d(channels, channels, kernel, groups=channels, bias=False)
        with torch.no_grad():  # start near the identity: the current token dominates
            self.conv.weight.mul_(0.5)
            self.conv.weight[:, :, -1] += 1.0

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (batch, seq, channels) -> y (batch, seq, channels) and the new state (batch, kernel - 1, channels)."""
        b, t, c = x.shape
        past = x.new_zeros(b, self.kernel - 1, c) if state is None else state
        full = torch.cat([past, x], dim=1)
        y = F.conv1d(full.transpose(1, 2), self.conv.weight, groups=c).transpose(1, 2)
        return y, full[:, full.shape[1] - (self.kernel - 1):]

    def state_numel(self) -> int:
        return (self.kernel - 1) * self.conv.in_channels

    def flops_per_token(self) -> int:
        return 2 * self.kernel * self.conv.in_channels
