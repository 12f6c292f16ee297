"""Invariant 2: points of the space equal the textbook recurrences of known models, written out here
independently of the engine (W is d_v x d_k, y_t = W_t q_t, read after write). Linear memories with the
l2 or dot bias run at chunk size 4 here: their chunked form is exact (a triangular solve per chunk)."""
from __future__ import annotations

import pytest
import torch

from components import MemoryRule, memory_scan
from components.engine import Execution

from .helpers import engine_inputs, rel_err


def textbook(W0, k, v, q, step):
    W, ys = W0.clone(), []
    for t in range(k.shape[1]):
        W = step(W, k[:, t], v[:, t], t)
        ys.append(torch.einsum("nij,nj->ni", W, q[:, t]))
    return torch.stack(ys, dim=1)


def outer(a, b):
    return torch.einsum("ni,nj->nij", a, b)


def matvec(W, x):
    return torch.einsum("nij,nj->ni", W, x)


def run(rule, chunk_size=4, exact=None, **kw):
    acc, k, v, q, gates = engine_inputs(rule, T=9, **kw)
    y, _ = memory_scan(rule, k, v, q, gates, acc, chunk_size=chunk_size, exact=exact)
    return y, acc[0], k, v, q, gates


def test_linear_attention():
    y, W0, k, v, q, g = run(MemoryRule("linear", "dot", "none", "gd"))
    lr = g["lr"]
    assert rel_err(y, textbook(W0, k, v, q, lambda W, k, v, t: W + lr[:, t, None, None] * outer(v, k))) < 1e-12


def test_retnet_and_mamba2_style_decay():
    y, W0, k, v, q, g = run(MemoryRule("linear", "dot", "decay", "gd"))
    a, lr = g["retain"], g["lr"]
    ref = textbook(W0, k, v, q, lambda W, k, v, t: a[:, t, None, None] * W + lr[:, t, None, None] * outer(v, k))
    assert rel_err(y, ref) < 1e-12


def test_value_channel_decay_on_output_rows():
    y, W0, k, v, q, g = run(MemoryRule("linear", "dot", {"name": "decay", "granularity": "value"}, "gd"))
    a, lr = g["retain"], g["lr"]
    ref = textbook(W0, k, v, q, lambda W, k, v, t: a[:, t, :, None] * W + lr[:, t, None, None] * outer(v, k))
    assert rel_err(y, ref) < 1e-12


def gla_textbook(S0, k, v, q, alpha, lr):
    """GLA (Yang et al. 2023, eq. 2-3), in its own layout: S_t = Diag(alpha_t) S_{t-1} + k_t^T v_t (S is d_k x d_v),
    o_t = q_t S_t; here with the write scaled by theta_t."""
    S, outs = S0.clone(), []
    for t in range(k.shape[1]):
        S = alpha[:, t, :, None] * S + lr[:, t, None, None] * torch.einsum("nk,nv->nkv", k[:, t], v[:, t])
        outs.append(torch.einsum("nk,nkv->nv", q[:, t], S))
    return torch.stack(outs, dim=1)


@pytest.mark.parametrize("chunk", [1, 4, 9])
def test_gla_key_channel_decay(chunk):
    """The gla preset's rule at any chunk size. Gates that forget everything (1e-30) for six tokens in a row take a
    chunk's log-decay past exp's range, where the step leaves GLA's factored form for segment sums (chunk 9), and
    stay inside it for chunks of 4."""
    from components.models import resolve_spec

    rule = resolve_spec("gla").memory.rule()
    acc, k, v, q, g = engine_inputs(rule, T=9)
    g["retain"][:, 2:8] = 1e-30
    y, _ = memory_scan(rule, k, v, q, g, acc, chunk_size=chunk)
    assert rel_err(y, gla_textbook(acc[0].mT, k, v, q, g["retain"], g["lr"])) < 1e-12


def test_delta_rule_with_key_channel_decay():
    """W_t = (W_{t-1} Diag(alpha_t)) (I - theta_t k_t k_t^T) + theta_t v_t k_t^T (decay, then the delta step)."""
    rule = MemoryRule("linear", "l2", {"name": "decay", "granularity": "key", "grad_at": "decayed"}, "gd")
    y, W0, k, v, q, g = run(rule)
    a, lr = g["retain"], g["lr"]
    eye = torch.eye(k.shape[-1], dtype=k.dtype)
    ref = textbook(W0, k, v, q, lambda W, kt, vt, t: (W * a[:, t, None, :]) @ (eye - lr[:, t, None, None] * outer(kt, kt))
                   + lr[:, t, None, None] * outer(vt, kt))
    assert rel_err(y, ref) < 1e-12


def test_deltanet():
    y, W0, k, v, q, g = run(MemoryRule("linear", "l2", "none", "gd"))
    b = g["lr"]
    # S_t = S_{t-1} (I - b k k^T) + b v k^T
    eye = torch.eye(k.shape[-1], dtype=k.dtype)
    ref = textbook(W0, k, v, q, lambda W, k, v, t: W @ (eye - b[:, t, None, None] * outer(k, k)) + b[:, t, None, None] * outer(v, k))
    assert rel_err(y, ref) < 1e-12


def test_gated_deltanet():
    y, W0, k, v, q, g = run(MemoryRule("linear", "l2", {"name": "decay", "grad_at": "decayed"}, "gd"))
    a, b = g["retain"], g["lr"]
    eye = torch.eye(k.shape[-1], dtype=k.dtype)
    # S_t = a_t S_{t-1} (I - b k k^T) + b v k^T  (Yang et al. 2024, eq. 10)
    step = lambda W, k, v, t: a[:, t, None, None] * W @ (eye - b[:, t, None, None] * outer(k, k)) + b[:, t, None, None] * outer(v, k)  # noqa: E731
    assert rel_err(y, textbook(W0, k, v, q, step)) < 1e-12


def test_longhorn_implicit_step():
    y, W0, k, v, q, g = run(MemoryRule("linear", "l2", "none", "implicit"))
    b = g["lr"]

    def step(W, k, v, t):
        eps = (b[:, t] / (1.0 + b[:, t] * (k * k).sum(-1)))[:, None, None]
        return W - eps * outer(matvec(W, k) - v, k)

    assert rel_err(y, textbook(W0, k, v, q, step)) < 1e-12
    # the implicit step solves min_W 1/2 ||W - W_prev||^2 + b/2 ||W k - v||^2 exactly: its residual is b-scaled
    W1 = step(W0, k[:, 0], v[:, 0], 0)
    grad = (W1 - W0) + b[:, 0, None, None] * outer(matvec(W1, k[:, 0]) - v[:, 0], k[:, 0])
    assert grad.abs().max() < 1e-12


def test_deltaproduct_two_householder_steps_per_token():
    rule = MemoryRule("linear", "l2", "none", {"name": "multistep", "steps": 2})
    acc, k, v, q, g = engine_inputs(rule, T=5)
    y, _ = memory_scan(rule, k, v, q, g, acc, chunk_size=3)
    b, eye = g["lr"], torch.eye(k.shape[-1], dtype=k.dtype)
    W, ys = acc[0].clone(), []
    for t in range(q.shape[1]):
        for i in range(2):
            kk, vv = k[:, 2 * t + i], v[:, 2 * t + i]
            W = W @ (eye - b[:, t, None, None] * outer(kk, kk)) + b[:, t, None, None] * outer(vv, kk)
        ys.append(matvec(W, q[:, t]))
    assert rel_err(y, torch.stack(ys, 1)) < 1e-12


@pytest.mark.parametrize("chunk", [1, 4])
def test_titans_linear_closed_form_with_momentum_and_decay(chunk):
    """Titans eq. 32-33 for a linear memory: mini-batch gradients at the chunk start, written out in the
    closed form of Titans sec. 3.2 with cumulative products (fine at this length and these gates)."""
    rule = MemoryRule("linear", "l2", "decay", "momentum")
    y, W0, k, v, q, g = run(rule, chunk_size=chunk, exact=False)
    a, eta, th = g["retain"], g["momentum"], g["lr"]
    N, T, d = k.shape
    W, S, ys = W0.clone(), torch.zeros_like(W0), []
    for c0 in range(0, T, chunk):
        idx = range(c0, min(c0 + chunk, T))
        u = {j: outer(matvec(W, k[:, j]) - v[:, j], k[:, j]) for j in idx}  # all at the chunk start
        Wc, Sc = W, S
        for t in idx:
            beta = torch.prod(a[:, c0 : t + 1], 1)
            m = torch.prod(eta[:, c0 : t + 1], 1)
            f = sum(torch.prod(a[:, kk + 1 : t + 1], 1) * torch.prod(eta[:, c0 : kk + 1], 1) for kk in range(c0, t + 1))
            Wt = beta[:, None, None] * Wc + f[:, None, None] * Sc
            St = m[:, None, None] * Sc
            for j in range(c0, t + 1):
                G = sum(torch.prod(a[:, kk + 1 : t + 1], 1) * torch.prod(eta[:, j + 1 : kk + 1], 1) for kk in range(j, t + 1))
                Wt = Wt - (G * th[:, j])[:, None, None] * u[j]
                St = St - (torch.prod(eta[:, j + 1 : t + 1], 1) * th[:, j])[:, None, None] * u[j]
            ys.append(matvec(Wt, q[:, t]))
        W, S = Wt, St
    assert rel_err(y, torch.stack(ys, 1)) < 1e-12


@pytest.mark.parametrize("read", ["after", "before"])
def test_titans_pytorch_chunk_momentum_on_a_deep_memory(read):
    """titans-pytorch's NeuralMemory (store_memories / retrieve_memories, batch_size = chunk size), written out: one
    surprise per chunk, -sum_t theta_t grad 1/2||M_W(k_t) - v_t||^2 at the chunk-start weights;
    S_c = eta_c S_{c-1} + surprise_c and W_c = alpha_c W_{c-1} + S_c (its two associative scans); retrieval pads
    the sequence by one token, so token t reads updates[(t + 1) // C] of [W_0, W_1, ...] (read before write:
    updates[t // C]). test_titans_pytorch.py checks the same against the library itself."""
    C = 3
    rule = MemoryRule("mlp", "l2", "decay", "chunk_momentum")
    acc, k, v, q, g = engine_inputs(rule, T=10)
    y, _ = memory_scan(rule, k, v, q, g, acc, chunk_size=C, read=read)
    a, eta, th = g["retain"], g["momentum"], g["lr"]
    forward = rule.structure.forward  # the memory model itself is tested elsewhere; the update rule is checked here
    T = k.shape[1]
    W, S, updates = [w.clone() for w in acc], [torch.zeros_like(w) for w in acc], [acc]
    for c0 in range(0, T - T % C, C):  # like titans-pytorch, only a complete chunk updates the memory
        Wg = [w.detach().requires_grad_(True) for w in W]
        loss = (0.5 * (forward(Wg, k[:, c0 : c0 + C]) - v[:, c0 : c0 + C]).pow(2).sum(-1) * th[:, c0 : c0 + C]).sum()
        surprise = [-gr for gr in torch.autograd.grad(loss, Wg)]
        S = [eta[:, c0, None, None] * s + u for s, u in zip(S, surprise)]
        W = [a[:, c0, None, None] * w + s for w, s in zip(W, S)]
        updates.append(W)
    shift = 1 if read == "after" else 0
    ys = [forward(updates[(t + shift) // C], q[:, t : t + 1]) for t in range(T)]
    assert rel_err(y, torch.cat(ys, dim=1)) < 1e-12


@pytest.mark.parametrize("channel_wise", [False, True], ids=["per-head", "channel-wise"])
def test_yaad_huber_mixture_on_a_deep_memory_equals_an_autograd_loop(channel_wise):
    """Yaad (MIRAS eq. 16/26), written out with autograd on the memory M(x) = x + LN(W_2 gelu(W_1 x)):
    W_t = alpha_t W_{t-1} - theta_t grad 1/2||M(k_t) - v_t||^2 while ||M(k_t) - v_t|| <= delta_t, else
    W_t = alpha_t W_{t-1} - theta_t delta_t grad ||M(k_t) - v_t||_1; y_t = M_{W_t}(q_t). Channel-wise (MIRAS sec. 5.4,
    the preset's gate coupling): theta and delta per value channel, each channel taking the piece its delta picks."""
    import torch.nn.functional as F

    from components.models import resolve_spec

    rule = resolve_spec("yaad").memory.rule()
    assert (rule.bias.variant, rule.bias.delta_mode) == ("mixture", "data")
    acc, k, v, q, g = engine_inputs(rule, T=12, d=6, channel_lr=channel_wise)
    g["delta"] = 0.2 + 3 * g["delta"]  # both pieces get taken over the sequence
    if channel_wise:
        g["delta"] = g["delta"][..., None] * torch.linspace(0.5, 1.5, 6, dtype=g["delta"].dtype)
    theta, delta = (x if channel_wise else x[..., None] for x in (g["lr"], g["delta"]))
    y, _ = memory_scan(rule, k, v, q, g, acc, chunk_size=1, path="reference")
    y_fast, _ = memory_scan(rule, k, v, q, g, acc, chunk_size=1)

    def memory(W, x):
        h = F.gelu(x @ W[0].mT) @ W[1].mT
        return x + F.layer_norm(h, h.shape[-1:], eps=1e-5)

    W, ys, pieces = [w.clone() for w in acc], [], set()
    for t in range(k.shape[1]):
        Wg = [w.detach().requires_grad_(True) for w in W]
        e = memory(Wg, k[:, t : t + 1]) - v[:, t : t + 1]  # (N, 1, d)
        small = e.detach().norm(dim=-1, keepdim=True) <= delta[:, t : t + 1]  # (N, 1, 1 or d)
        pieces |= set(small.flatten().tolist())
        per_channel = torch.where(small, 0.5 * e.pow(2), delta[:, t : t + 1] * e.abs())
        loss = (per_channel * theta[:, t : t + 1]).sum()
        grads = torch.autograd.grad(loss, Wg)
        W = [g["retain"][:, t, None, None] * w - gr for w, gr in zip(W, grads)]
        ys.append(memory(W, q[:, t : t + 1]))
    assert pieces == {True, False}
    expected = torch.cat(ys, dim=1)
    assert rel_err(y, expected) < 1e-12 and rel_err(y_fast, expected) < 1e-12


def _moneta_link(A):
    """MIRAS eq. 24's W = A / ||A||^(q-2) read as the p-norm link sign(A)|A|^(p-1) / ||A||_p^(p-2), p = q/(q-1) = 4/3,
    the norm mean-normalised, |A| smoothed as sqrt(A^2 + (0.1 rms A)^2) (sec. 5.4's smoothing, relative to scale) and
    sign(A) read as A / |A| with the same smoothed |A|."""
    p = 4.0 / 3.0
    mag = (A * A + 0.01 * A.pow(2).mean((-2, -1), keepdim=True)).sqrt()
    norm = mag.pow(p).mean((-2, -1), keepdim=True).pow(1.0 / p)
    return A / mag * mag.pow(p - 1.0) / norm.pow(p - 2.0)


def _memora_link(A):
    """MIRAS eq. 27: W = c softmax(A) per row, A the log-weights; c = the row's fan-in (mean weight 1)."""
    return A.shape[-1] * torch.softmax(A, dim=-1)


def _moneta_output_grad(e):
    """d/de of ||e||_3^3 with sec. 5.4's smoothing: 3 tanh(10 e) (e^2 + 1e-6)."""
    return 3.0 * torch.tanh(10.0 * e) * (e * e + 1e-6)


@pytest.mark.parametrize("preset", ["moneta", "memora"])
def test_moneta_and_memora_on_a_deep_memory_equal_an_autograd_loop(preset):
    """Moneta (MIRAS eq. 24, p = 3, q = 4) and Memora (eq. 27), written out with autograd on the memory
    M(x) = x + LN(W_2 gelu(W_1 x)): A_t = alpha_t A_{t-1} - eta_t grad l(W_{t-1}; k_t, v_t), W_t = link(A_t),
    y_t = M_{W_t}(q_t); eta per value channel (the presets' MIRAS coupling), alpha per head."""
    import torch.nn.functional as F

    from components.models import resolve_spec

    rule = resolve_spec(preset).memory.rule()
    link = {"moneta": _moneta_link, "memora": _memora_link}[preset]
    output_grad = {"moneta": _moneta_output_grad, "memora": lambda e: e}[preset]
    acc, k, v, q, g = engine_inputs(rule, T=12, d=6, channel_lr=True)
    y, _ = memory_scan(rule, k, v, q, g, acc, chunk_size=1, path="reference")
    y_fast, _ = memory_scan(rule, k, v, q, g, acc, chunk_size=1)

    def memory(W, x):
        h = F.gelu(x @ W[0].mT) @ W[1].mT
        return x + F.layer_norm(h, h.shape[-1:], eps=1e-5)

    A, ys = [a.clone() for a in acc], []
    for t in range(k.shape[1]):
        W = [link(a).requires_grad_(True) for a in A]
        e = memory(W, k[:, t : t + 1]) - v[:, t : t + 1]
        grads = torch.autograd.grad(e, W, grad_outputs=g["lr"][:, t : t + 1] * output_grad(e.detach()))
        A = [g["retain"][:, t, None, None] * a - gr for a, gr in zip(A, grads)]
        ys.append(memory([link(a) for a in A], q[:, t : t + 1]))
    expected = torch.cat(ys, dim=1)
    assert rel_err(y, expected) < 1e-12 and rel_err(y_fast, expected) < 1e-12


@pytest.mark.parametrize("preset", ["ttt_linear", "ttt_mlp"])
@pytest.mark.parametrize("split", [None, 5])
def test_ttt_mini_batch_gd_with_position_scaled_steps(preset, split):
    """TTT (Sun et al. 2024, the dual form): in each mini-batch b (the chunk) every gradient is taken at its start
    weights W_b, token i (from 1) of the mini-batch steps with theta / i, and reads W_b - sum_{j<=t} theta_j/i_j
    grad_j; written here with autograd on f(x) = x + LN(f_res(x)), the preset's memory without its inner biases and LN
    scale and shift (the next test has them). Streaming split inside a mini-batch too."""
    import torch.nn.functional as F

    from components.models import resolve_spec

    spec = resolve_spec(preset).memory
    full, C = spec.rule(), 4
    plain = {"name": full.structure.name, **full.structure.opts, "bias": False, "norm_affine": False}
    rule = MemoryRule(plain, full.bias, full.retention, full.algorithm)
    acc, k, v, q, g = engine_inputs(rule, T=11, d=6)
    if split is None:
        y, _ = memory_scan(rule, k, v, q, g, acc, chunk_size=C)
    else:
        first = {n: x[:, :split] for n, x in g.items()}
        rest = {n: x[:, split:] for n, x in g.items()}
        y1, state = memory_scan(rule, k[:, :split], v[:, :split], q[:, :split], first, acc, chunk_size=C)
        y2, _ = memory_scan(rule, k[:, split:], v[:, split:], q[:, split:], rest, state, chunk_size=C)
        y = torch.cat([y1, y2], dim=1)

    def f(W, x):
        h = x
        for i, w in enumerate(W):
            h = h @ w.mT
            if i < len(W) - 1:
                h = F.gelu(h)
        return x + F.layer_norm(h, h.shape[-1:], eps=1e-5)

    W, ys = [w.clone() for w in acc], []
    for b in range(0, k.shape[1], C):
        Wg = [w.detach().requires_grad_(True) for w in W]
        steps = []
        for t in range(b, min(b + C, k.shape[1])):
            loss = 0.5 * (f(Wg, k[:, t : t + 1]) - v[:, t : t + 1]).pow(2).sum()
            grads = torch.autograd.grad(loss, Wg)
            theta = g["lr"][:, t] / (t - b + 1)
            steps.append([theta[:, None, None] * gr for gr in grads])
            Wt = [w - sum(s[i] for s in steps) for i, w in enumerate(W)]
            ys.append(f(Wt, q[:, t : t + 1]))
        W = Wt
    assert rel_err(y, torch.cat(ys, dim=1)) < 1e-12


@pytest.mark.parametrize("preset", ["ttt_linear", "ttt_mlp"])
@pytest.mark.parametrize("split", [None, 5])
def test_ttt_inner_biases_and_ln_scale_and_shift_equal_a_plain_autograd_loop(preset, split):
    """TTT's f(x) = x + gamma * LN(f_res(x)) + beta with affine inner layers W x + b (Sun et al. 2024): the biases are
    fast weights updated by the same mini-batch steps as W (theta / i at position i of the mini-batch, every gradient at
    the mini-batch's start weights), gamma and beta are outer parameters the inner steps never touch. Written here as a
    plain autograd loop over separate W_l, b_l, float64, with a stream split inside a mini-batch; outputs, the final
    fast weights and the outer gradients of W_0, b_0, gamma and beta all agree with the engine's default path."""
    import torch.nn.functional as F

    from components.engine import plan
    from components.models import resolve_spec

    from .helpers import engine_outer

    spec = resolve_spec(preset).memory
    rule, C, d = spec.rule(), 4, 6
    assert rule.structure.has_bias and rule.structure.has_norm_affine
    acc, k, v, q, g = engine_inputs(rule, T=11, d=d)
    gamma, beta = engine_outer(rule, N=k.shape[0], d=d)  # away from (1, 0), so that they matter
    assert plan(rule, Execution()).path == "fused"
    # the engine stores layer l's bias as the last column of its weights: [W_l | b_l]
    W0 = [a[..., :-1].clone().requires_grad_(True) for a in acc]
    b0 = [a[..., -1].clone().requires_grad_(True) for a in acc]
    gamma, beta = gamma.clone().requires_grad_(True), beta.clone().requires_grad_(True)
    leaves = [*W0, *b0, gamma, beta]

    def engine():
        init = [torch.cat([w, b[..., None]], dim=-1) for w, b in zip(W0, b0)]
        if split is None:
            y, state = memory_scan(rule, k, v, q, g, init, chunk_size=C, outer=[gamma, beta])
            return y, state
        first = {n: x[:, :split] for n, x in g.items()}
        rest = {n: x[:, split:] for n, x in g.items()}
        y1, state = memory_scan(rule, k[:, :split], v[:, :split], q[:, :split], first, init, chunk_size=C,
                                outer=[gamma, beta])
        y2, state = memory_scan(rule, k[:, split:], v[:, split:], q[:, split:], rest, state, chunk_size=C,
                                outer=[gamma, beta])
        return torch.cat([y1, y2], dim=1), state

    def f(W, b, x):  # x: (N, 1, d); W_l: (N, out, in); b_l: (N, out)
        h = x
        for i, (w, bi) in enumerate(zip(W, b)):
            h = torch.einsum("ntj,nij->nti", h, w) + bi[:, None]
            if i < len(W) - 1:
                h = F.gelu(h)
        mu = h.mean(-1, keepdim=True)
        var = (h - mu).pow(2).mean(-1, keepdim=True)
        return x + gamma[:, None] * (h - mu) / torch.sqrt(var + 1e-5) + beta[:, None]

    def textbook():
        W, b, ys = list(W0), list(b0), []
        for start in range(0, k.shape[1], C):
            Wb, bb, steps = W, b, []
            for t in range(start, min(start + C, k.shape[1])):
                loss = 0.5 * (f(Wb, bb, k[:, t : t + 1]) - v[:, t : t + 1]).pow(2).sum()
                grads = torch.autograd.grad(loss, [*Wb, *bb], create_graph=True)  # differentiable: outer grads below
                theta = g["lr"][:, t] / (t - start + 1)
                steps.append([theta.view(-1, *[1] * (gr.dim() - 1)) * gr for gr in grads])
                new = [p - sum(s[i] for s in steps) for i, p in enumerate([*Wb, *bb])]
                W, b = new[: len(Wb)], new[len(Wb):]
                ys.append(f(W, b, q[:, t : t + 1]))
        return torch.cat(ys, dim=1), W, b

    y, state = engine()
    y_ref, W_ref, b_ref = textbook()
    errs = [rel_err(y, y_ref)]
    errs += [rel_err(a[..., :-1], w) for a, w in zip(state.acc, W_ref)]
    errs += [rel_err(a[..., -1], bb) for a, bb in zip(state.acc, b_ref)]
    assert max(errs) < 1e-12, errs
    # outer gradients: the initial fast weights (W_0, b_0) and the LN's scale and shift
    weight = torch.linspace(-1, 1, d, dtype=y.dtype)
    grads = torch.autograd.grad((y * weight).pow(2).sum(), leaves)
    grads_ref = torch.autograd.grad((y_ref * weight).pow(2).sum(), leaves)
    for a, r in zip(grads, grads_ref):
        assert r.abs().max() > 1e-3 and rel_err(a, r) < 1e-10, rel_err(a, r)


def test_ttt_layer_trains_its_ln_scale_and_shift_and_initial_biases():
    """In the layer, gamma and beta are parameters per head and channel (init 1 and 0) that the outer loss trains; the
    initial biases b_0 (zero at init) are the last columns of the learnable initial weights."""
    from components.layers import MemoryLayer
    from components.models import resolve_spec

    rule = resolve_spec("ttt_mlp").memory.rule()
    layer = MemoryLayer(8, rule, heads=2, chunk_size=4)
    gamma, beta = layer.outer
    assert gamma.shape == beta.shape == (2, 4) and torch.equal(gamma, torch.ones(2, 4)) and not beta.any()
    assert all(not p[..., -1].any() for p in layer.init_acc)
    y, _ = layer(torch.randn(2, 10, 8))
    y.pow(2).mean().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad[..., -1].abs().sum() > 0 for p in layer.init_acc)
