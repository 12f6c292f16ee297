"""SwiGLU feed-forward block (Shazeer 2020, as in Llama)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class SwiGLU(nn.Module):
    """y = w_down(silu(x W_gate) * (x W_up)); gate and up projections fused in one Linear, no biases.

    hidden defaults to 8/3 * dim (keeps the parameter count of a 4*dim MLP) rounded up to a
    multiple of `multiple_of` for friendlier matmul shapes; an explicit hidden is used as given.
    """

    def __init__(self, dim: int, hidden: int | None = None, multiple_of: int = 16) -> None:
        super().__init__()
        if hidden is None:
            hidden = multiple_of * -(-8 * dim // (3 * multiple_of))  # ceil(8*dim/3 / m) * m, exact in ints
        self.dim, self.hidden = dim, hidden
        self.w_gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.w_down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.w_gate_up(x).chunk(2, dim=-1)
        return self.w_down(F.silu(gate) * up)

    def flops_per_token(self) -> int:
        """Forward FLOPs per token: 2*dim*2*hidden (gate + up) + 2*hidden*dim (down) = 6*dim*hidden.

        The element-wise silu and product are not counted.
        """
        return 2 * self.dim * 2 * self.hidden + 2 * self.hidden * self.dim
