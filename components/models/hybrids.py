"""Titans' hybrid token mixers: memory as context (MAC) and memory as gate (MAG) (Behrouz et al. 2024, sec. 4).

MAL needs no mixer of its own: it is a memory block followed by a sliding-window attention block.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from ..layers import CausalSelfAttention, KVCache, MemoryLayer, MemoryLayerState
from ..layers.norm import rms_norm


@dataclass
class MACState:
    memory: MemoryLayerState | None  # the memory at the start of the current segment
    pending: Tensor | None  # inputs of the current, unfinished segment (recomputed with the next piece)

    def detach(self) -> "MACState":
        return MACState(None if self.memory is None else self.memory.detach(),
                        None if self.pending is None else self.pending.detach())


class MemoryAsContext(nn.Module):
    """Per segment S of the input (eqs. 21-25):
        h = M*_{t-1}(q_S)                     retrieve with the memory before the segment
        y = Attn([p || h || S])               causal attention within the segment, persistent tokens p first
        M_t = M_{t-1}.update(y),  o = y * M*_t(y)

    The retrieved token h_i is placed just before x_i ([p, h_1, x_1, h_2, x_2, ...]) so that plain causal
    attention never lets x_i see h_j of a later token j (h_j is computed from x_j); outputs are read at the
    x positions.
    """

    def __init__(self, dim: int, memory: MemoryLayer, attention: CausalSelfAttention, segment: int, persistent: int) -> None:
        super().__init__()
        self.memory, self.attention, self.segment = memory, attention, segment
        self.persistent = nn.Parameter(torch.randn(persistent, dim) * 0.02) if persistent else None

    def forward(self, x: Tensor, state: MACState | None = None) -> tuple[Tensor, MACState]:
        b = x.shape[0]
        mem = None if state is None else state.memory
        pending = None if state is None else state.pending
        xs = x if pending is None else torch.cat([pending, x], dim=1)
        n_pending = 0 if pending is None else pending.shape[1]
        outs, new_pending = [], None
        for seg in xs.split(self.segment, dim=1):
            h = self.memory.retrieve(seg, mem)
            seq = rearrange(torch.stack([h, seg], dim=2), "b t two d -> b (t two) d")
            p = 0 if self.persistent is None else self.persistent.shape[0]
            if p:
                seq = torch.cat([self.persistent.unsqueeze(0).expand(b, -1, -1).to(seq.dtype), seq], dim=1)
            a, _ = self.attention(seq)
            y = a[:, p + 1 :: 2]
            m_out, mem_after = self.memory(y, mem)
            outs.append(y * m_out)
            if seg.shape[1] == self.segment:
                mem = mem_after
            else:
                new_pending = seg
        out = torch.cat(outs, dim=1)
        return out[:, n_pending:], MACState(mem, new_pending)

    def state_numel(self, seq_len: int) -> int:
        """The memory, plus the inputs of an unfinished segment (recomputed with the next piece)."""
        return self.memory.state_numel() + (seq_len % self.segment) * self.memory.dim


@dataclass
class MAGState:
    memory: MemoryLayerState
    attention: KVCache

    def detach(self) -> "MAGState":
        return MAGState(self.memory.detach(), self.attention.detach())


class MemoryAsGate(nn.Module):
    """o = norm(SW-Attn*(x)) * sigmoid(norm(M(x))) (eqs. 26-28): sliding-window attention whose every query
    also sees the persistent tokens, and the memory branch on the same input, combined by a gate after
    normalisation with learned per-channel weights."""

    def __init__(self, dim: int, memory: MemoryLayer, attention: CausalSelfAttention, persistent: int) -> None:
        super().__init__()
        self.memory, self.attention = memory, attention
        self.persistent = nn.Parameter(torch.randn(persistent, dim) * 0.02) if persistent else None
        self.norm_attention, self.norm_memory = rms_norm(dim), rms_norm(dim)

    def forward(self, x: Tensor, state: MAGState | None = None) -> tuple[Tensor, MAGState]:
        prefix = None
        if state is None and self.persistent is not None:
            prefix = self.persistent.unsqueeze(0).expand(x.shape[0], -1, -1).to(x.dtype)
        y, kv = self.attention(x, None if state is None else state.attention, prefix=prefix)
        m, mem = self.memory(x, None if state is None else state.memory)
        return self.norm_attention(y) * torch.sigmoid(self.norm_memory(m)), MAGState(mem, kv)

    def state_numel(self, seq_len: int) -> int:
        """The memory, the window's keys and values, and the persistent tokens' keys and values."""
        persistent = 0 if self.persistent is None else self.persistent.shape[0]
        attn = self.attention
        return self.memory.state_numel() + attn.state_numel(seq_len) + 2 * attn.heads * attn.head_dim * persistent
