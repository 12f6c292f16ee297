"""Causal softmax self-attention (full or sliding-window) with RoPE, an optional short convolution on q/k/v,
and a KV cache for streaming."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .conv import ShortConv


def _rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def _additive(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Boolean mask -> 0 / -inf: on CPU a float mask runs the fused flash kernel, a boolean one the math path."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


class RotaryEmbedding(nn.Module):
    """RoPE, rotate-half convention (Llama / GPT-NeoX): channel i pairs with channel i + head_dim/2.

    cos/sin tables are plain attributes, not buffers, so they stay out of the state dict; they are
    rebuilt when a longer sequence, another dtype or another device shows up.
    """

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head_dim, got {head_dim}")
        self.head_dim, self.base = head_dim, base
        self._cos: Tensor | None = None
        self._sin: Tensor | None = None

    def _tables(self, length: int, like: Tensor) -> tuple[Tensor, Tensor]:
        cos = self._cos
        if cos is None or cos.shape[0] < length or cos.dtype != like.dtype or cos.device != like.device:
            # Grow geometrically so streaming token by token does not rebuild on every call.
            n = max(length, 2 * cos.shape[0] if cos is not None else 0)
            # Angles in float64 for float64 inputs (exact tests), else float32; cast only at the end.
            work = torch.float64 if like.dtype == torch.float64 else torch.float32
            inv_freq = self.base ** -(torch.arange(0, self.head_dim, 2, device=like.device, dtype=work) / self.head_dim)
            angles = torch.outer(torch.arange(n, device=like.device, dtype=work), inv_freq)
            angles = torch.cat((angles, angles), dim=-1)
            self._cos, self._sin = angles.cos().to(like.dtype), angles.sin().to(like.dtype)
        return self._cos, self._sin

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """x: (batch, heads, seq, head_dim); offset: absolute position of x's first token."""
        seq = x.shape[-2]
        cos, sin = self._tables(offset + seq, x)
        cos, sin = cos[offset:offset + seq], sin[offset:offset + seq]
        return x * cos + _rotate_half(x) * sin


@dataclass
class KVCache:
    """Streaming state of one attention layer.

    k, v:   (batch, heads, cached, head_dim); keys already rotated at their absolute positions
    offset: tokens seen so far, i.e. the absolute position of the next token
    """

    k: Tensor
    v: Tensor
    offset: int
    prefix_k: Tensor | None = None  # keys/values of always-visible prefix tokens (Titans' persistent memory)
    prefix_v: Tensor | None = None
    conv: Tensor | None = None  # (batch, conv_size - 1, 3 * inner): the short convolution's last inputs

    def detach(self) -> "KVCache":
        """Cut the graph here (truncated BPTT); values are kept."""
        d = lambda t: None if t is None else t.detach()  # noqa: E731
        return KVCache(self.k.detach(), self.v.detach(), self.offset, d(self.prefix_k), d(self.prefix_v), d(self.conv))


class CausalSelfAttention(nn.Module):
    """Multi-head causal softmax attention.

    window=None: full causal attention. window=w: query at position i sees keys i-w+1 .. i.
    conv_size=c > 0: a depthwise causal convolution of c taps over the projected q, k and v (as the memory
    layers have, and Zoology's MQAR models): each query, key and value then also carries its c - 1
    predecessors, so matching "the token after key x" needs no previous-token head learned through RoPE.
    """

    def __init__(self, dim: int, heads: int, head_dim: int | None = None, window: int | None = None,
                 rope: bool = True, rope_base: float = 10000.0, bias: bool = False, conv_size: int = 0) -> None:
        super().__init__()
        if head_dim is None:
            if dim % heads:
                raise ValueError(f"dim={dim} is not divisible by heads={heads}; pass head_dim")
            head_dim = dim // heads
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 or None, got {window}")
        self.dim, self.heads, self.head_dim, self.window = dim, heads, head_dim, window
        self.inner = heads * head_dim
        self.qkv = nn.Linear(dim, 3 * self.inner, bias=bias)
        self.out = nn.Linear(self.inner, dim, bias=bias)
        self.rope = RotaryEmbedding(head_dim, rope_base) if rope else None
        if conv_size < 0:
            raise ValueError(f"conv_size must be >= 0, got {conv_size}")
        self.conv = ShortConv(3 * self.inner, conv_size) if conv_size > 0 else None

    def _mask(self, n_q: int, n_k: int, device: torch.device) -> Tensor:
        """Boolean (n_q, n_k), True = attend; the queries are the last n_q of the n_k positions."""
        q_pos = torch.arange(n_k - n_q, n_k, device=device)[:, None]
        k_pos = torch.arange(n_k, device=device)[None, :]
        mask = k_pos <= q_pos
        if self.window is not None:
            mask &= k_pos > q_pos - self.window
        return mask

    def forward(self, x: Tensor, state: KVCache | None = None, prefix: Tensor | None = None) -> tuple[Tensor, KVCache]:
        """x: (batch, seq, dim) -> y: (batch, seq, dim) and the cache to pass with the next piece.

        The returned cache is not detached (call .detach() for truncated BPTT). It holds every key
        for full attention and the last window - 1 for window attention: that is all the next
        query (which sees itself plus window - 1 earlier tokens) can reach.
        prefix (batch, P, dim): tokens every query sees whatever the window (persistent memory, attention
        sinks); given with the first piece, then carried in the cache. They take no position (no RoPE).
        """
        if prefix is not None and state is not None:
            raise ValueError("prefix is given with the first piece only; later pieces carry it in the state")
        pk = pv = None
        if prefix is not None:
            _, pk, pv = rearrange(self.qkv(prefix), "b t (three h d) -> three b h t d", three=3, h=self.heads)
        elif state is not None:
            pk, pv = state.prefix_k, state.prefix_v
        qkv, conv = self.qkv(x), None
        if self.conv is not None:  # prefix tokens have no position, so they skip the convolution
            qkv, conv = self.conv(qkv, None if state is None else state.conv)
            qkv = qkv.contiguous()  # the conv's output is channel-strided; SDPA's fused kernels need unit stride
        q, k, v = rearrange(qkv, "b t (three h d) -> three b h t d", three=3, h=self.heads)
        offset = 0 if state is None else state.offset
        if self.rope is not None:
            q, k = self.rope(q, offset), self.rope(k, offset)
        if state is not None:
            k, v = torch.cat((state.k, k), dim=2), torch.cat((state.v, v), dim=2)

        n_q, n_k = q.shape[2], k.shape[2]
        if self.window is not None and state is None and n_q > 2 * self.window:
            y = self._blocked_window(q, k, v, pk, pv)  # O(T * window), not O(T^2)
        elif pk is not None:
            mask = self._mask(n_q, n_k, x.device)
            mask = torch.cat([mask.new_ones(n_q, pk.shape[2]), mask], dim=1)
            y = F.scaled_dot_product_attention(q, torch.cat([pk, k], 2), torch.cat([pv, v], 2),
                                               attn_mask=_additive(mask, q.dtype))
        elif n_k == n_q and self.window is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # fast path, no mask tensor
        elif n_q == 1 and (self.window is None or n_k <= self.window):
            y = F.scaled_dot_product_attention(q, k, v)  # one decoding step that sees the whole cache
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=_additive(self._mask(n_q, n_k, x.device), q.dtype))

        keep = n_k if self.window is None else min(n_k, self.window - 1)
        new_state = KVCache(k[:, :, n_k - keep:], v[:, :, n_k - keep:], offset + n_q, pk, pv, conv)
        return self.out(rearrange(y, "b h t d -> b t (h d)")), new_state

    def _blocked_window(self, q: Tensor, k: Tensor, v: Tensor, pk: Tensor | None, pv: Tensor | None) -> Tensor:
        """Sliding-window attention over a whole sequence in blocks of `window` queries, each seeing its own
        block and the previous one (plus any prefix): every key a query may reach, 2 * window keys per query."""
        b, h, T, d = q.shape
        w = self.window
        nb = -(-T // w)
        pad = nb * w - T
        grow = lambda t: F.pad(t, (0, 0, w, pad))  # noqa: E731  (one empty block in front, the tail padded)
        kp, vp = grow(k), grow(v)
        blocks = lambda t: t.unfold(2, 2 * w, w).transpose(-1, -2)  # noqa: E731  (b, h, nb, 2w, d)
        kb, vb = blocks(kp), blocks(vp)
        qb = F.pad(q, (0, 0, 0, pad)).view(b, h, nb, w, d)
        q_pos = torch.arange(nb * w, device=q.device).view(nb, w, 1)
        k_pos = (torch.arange(nb, device=q.device) * w).view(nb, 1, 1) - w + torch.arange(2 * w, device=q.device)
        allowed = (k_pos <= q_pos) & (k_pos > q_pos - w) & (k_pos >= 0)  # (nb, w, 2w)
        if pk is not None:
            p = pk.shape[2]
            kb = torch.cat([pk.unsqueeze(2).expand(b, h, nb, p, d), kb], dim=3)
            vb = torch.cat([pv.unsqueeze(2).expand(b, h, nb, p, d), vb], dim=3)
            allowed = torch.cat([allowed.new_ones(nb, w, p), allowed], dim=2)
        # 4-D (blocks folded into heads): CPU's fused kernel takes 4-D inputs only
        n_keys = kb.shape[3]
        fold = lambda t: t.reshape(b, h * nb, t.shape[3], d)  # noqa: E731
        mask = allowed.unsqueeze(0).expand(h, nb, w, n_keys).reshape(1, h * nb, w, n_keys)  # 4-D, or the math path
        y = F.scaled_dot_product_attention(fold(qb), fold(kb), fold(vb), attn_mask=_additive(mask, q.dtype))
        return y.reshape(b, h, nb * w, d)[:, :, :T]

    def cache_len(self, seq_len: int) -> int:
        """Tokens held in the cache after seq_len tokens: seq_len, or window - 1 at most."""
        return seq_len if self.window is None else min(seq_len, self.window - 1)

    def state_numel(self, seq_len: int) -> int:
        """Numbers held per sequence after seq_len tokens: 2 (k and v) * heads * head_dim * cache_len, plus the
        convolution's last inputs."""
        conv = 0 if self.conv is None else self.conv.state_numel()
        return 2 * self.heads * self.head_dim * self.cache_len(seq_len) + conv

    def flops_per_token(self, seq_len: int) -> int:
        """Forward FLOPs per token averaged over a sequence of seq_len tokens (multiply-add = 2).

        projections: 2*dim*3*inner (qkv) + 2*inner*dim (out), with inner = heads * head_dim
        attention:   2*2*heads*head_dim*K, scores q.k and the weighted sum of v, where K is the mean
                     number of keys a query sees: mean over i = 1..L of min(i, window) (full: (L+1)/2)
        convolution: 2*conv_size per q/k/v channel when there is one
        Softmax, RoPE and masking are not counted.
        """
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        w = seq_len if self.window is None else min(self.window, seq_len)
        total_keys = w * (w + 1) // 2 + (seq_len - w) * w  # sum_i min(i, w)
        proj = 2 * self.dim * 3 * self.inner + 2 * self.inner * self.dim
        conv = 0 if self.conv is None else self.conv.flops_per_token()
        return proj + conv + round(4 * self.heads * self.head_dim * total_keys / seq_len)
