"""chunk_momentum against lucidrains' titans-pytorch NeuralMemory itself (the library, not a transcription).

The keys, values, queries and gates are taken from inside a NeuralMemory forward (its projections, norms and pooled
chunk gates are its own business); our engine then runs on them from the same initial memory weights and must
return the values NeuralMemory retrieves. NeuralMemory takes every chunk's gradient at the weights from the start of
its store segment (`batch_size`; the whole call when None), so with batch_size = chunk_size it is exactly
chunk_momentum; with the default the reads after the second chunk differ (a test pins that down too, so a change of
either side is noticed). Float64; a plain MLP memory (mem_model_norm_add_residual=False: the library's residual norm
has a learnable gain that is itself a fast weight).
"""
from __future__ import annotations

import pytest
import titans_pytorch  # the test extra installs it (no skip: a missing oracle must not pass quietly)
import torch

from components import MemoryRule, memory_scan

B, T, D, C = 2, 11, 8, 4  # two full chunks and a short third


def titans_run(batch_size, heads=1, seed=0):
    """NeuralMemory's retrieved values (before its output norm) and what its store saw, per sequence-head."""
    torch.manual_seed(seed)
    mem = titans_pytorch.NeuralMemory(dim=D, chunk_size=C, batch_size=batch_size, heads=heads,
                                      mem_model_norm_add_residual=False,
                                      default_model_kwargs=dict(depth=2, expansion_factor=2.0)).double()
    N = B * heads
    seen = {"keys": [], "lr": [], "values": [], "momentum": [], "decay": []}
    per_sample_grad = mem.per_sample_grad_fn

    def spy(weights, keys, lr, values):  # called once per store segment, chunks flattened into the batch
        for name, t in (("keys", keys), ("lr", lr), ("values", values)):
            seen[name].append(t.reshape(N, -1, *t.shape[2:]))
        return per_sample_grad(weights, keys, lr, values)

    mem.per_sample_grad_fn = spy
    mem.to_momentum.register_forward_hook(lambda m, i, o: seen["momentum"].append(o[0, ..., 0]))  # (N, chunks)
    mem.to_decay_factor.register_forward_hook(lambda m, i, o: seen["decay"].append(o[..., 0]))
    mem.q_norm.register_forward_hook(lambda m, i, o: seen.__setitem__("q", o))
    mem.multihead_rmsnorm.register_forward_hook(lambda m, i, o: seen.__setitem__("y", i[0]))
    weights = [p.detach().clone() for p in mem.memory_model_parameters]  # (heads, in, out): x @ W
    with torch.no_grad():
        mem(torch.randn(B, T, D, dtype=torch.float64))
    # the retrieval pads one token in front: token t is row t + 1
    y = seen["y"][:, :, 1:T + 1].reshape(N, T, -1)
    q = seen["q"][:, :, 1:T + 1].reshape(N, T, -1)
    return {n: torch.cat(seen[n], dim=1) for n in ("keys", "lr", "values", "momentum", "decay")}, q, y, weights, N


def ours(store, q, weights, N):
    """Our engine on the same inputs: W (out, in) is the library's transpose, its loss mean((M(k) - v)^2) is our
    l2 bias 1/2 ||M(k) - v||^2 with theta = 2 / d times its step, and its gates are per chunk (ours: a chunk's first
    token's, repeated here over the chunk)."""
    full = store["keys"].shape[1]
    pad = lambda x, fill=0.0: torch.cat([x, torch.full((N, T - full, *x.shape[2:]), fill, dtype=x.dtype)], 1)  # noqa: E731
    per_token = lambda g: pad(g.repeat_interleave(C, dim=1), 1.0)  # noqa: E731  (the short chunk never updates)
    gates = {"lr": pad(store["lr"] * 2.0 / D), "momentum": per_token(store["momentum"].sigmoid()),
             "retain": per_token(1.0 - store["decay"].sigmoid())}
    rule = MemoryRule({"name": "mlp", "depth": 2, "expansion": 2.0, "residual": False, "activation": "gelu"},
                      "l2", "decay", "chunk_momentum")
    heads = weights[0].shape[0]
    acc = [w.mT.repeat(N // heads, 1, 1) for w in weights]
    y, _ = memory_scan(rule, pad(store["keys"]), pad(store["values"]), q, gates, acc, chunk_size=C)
    return y


@pytest.mark.parametrize("heads", [1, 2])
def test_chunk_momentum_equals_titans_pytorch_with_one_chunk_per_store_segment(heads):
    store, q, y_lib, weights, N = titans_run(batch_size=C, heads=heads)
    assert store["keys"].shape[1] == 2 * C  # both full chunks were stored
    y = ours(store, q, weights, N)
    assert (y - y_lib).abs().max() < 1e-12 * (1 + y_lib.abs().max())


def test_titans_pytorch_default_takes_every_gradient_of_a_call_at_its_start_weights():
    """batch_size=None: the same up to the last token of the second chunk, which reads weights whose second
    surprise NeuralMemory took at the call's start weights rather than at the chunk's."""
    store, q, y_lib, weights, N = titans_run(batch_size=None)
    y = ours(store, q, weights, N)
    err = (y - y_lib).abs().amax(dim=(0, 2))
    assert err[:2 * C - 1].max() < 1e-12
    assert err[2 * C - 1:].min() > 1e-6
