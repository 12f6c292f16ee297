"""The dry run's cost: FLOPs per trial from the accounting (3 x the forward per training token, counted on the meta
device), GPU-hours at the config's GPU and MFU, and the whole sweep's; the shipped paper-scale space prints its own."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from components.models import resolve_spec
from components.models.accounting import spec_flops_per_token
from search_space import load_space
from sweeps.cost import sweep_cost, trial_cost


def test_a_trial_costs_three_forward_passes_per_training_token_of_every_task():
    space = load_space("quick")
    plan = space.sample(1, seed=0, presets=True)[0]  # the first enqueued preset
    expected_flops = expected_tokens = 0
    for name, budget in space.budget.tasks.items():
        from sweeps.train.run import build_task

        task = build_task({"name": name, **budget.task})
        train = {**budget.train, **plan.train}
        tokens = train["steps"] * train["batch_size"] * train.get("accumulate", 1) * task.seq_len
        spec = resolve_spec(plan.model, [f"vocab_size={task.vocab_size}"])
        expected_flops += 3 * spec_flops_per_token(spec, task.seq_len) * tokens
        expected_tokens += tokens
    cost = trial_cost(space, plan.model, plan.train, "x")
    assert cost.tokens == expected_tokens and cost.flops == pytest.approx(expected_flops)
    lines = "\n".join(sweep_cost(space, n_trials=10, seed=0, cost={"gpu": "A100", "mfu": 0.5}))
    hours = float(re.search(r"MFU of an A100 \(312 bf16 TFLOP/s\): (\S+)", lines).group(1))
    mean_flops = float(re.search(r"FLOPs: (\S+)", lines).group(1))
    assert hours == pytest.approx(mean_flops / (312e12 * 0.5) / 3600, rel=1e-2)
    assert f"10 trials x {hours:.3g}" in lines and "deltanet" in lines


def test_the_shipped_paper_scale_space_prints_its_cost_up_front(tmp_path):
    """~170M parameters, 4096-token windows, a 32K BPE on streamed web text: the dry run counts its cost without
    building a model, touching the corpus or creating anything."""
    exe = Path(sys.executable).with_name("mirasweep")
    out = subprocess.run([str(exe), "sweep", "search_space=paper_170m", "sweep.n_trials=32", "--dry-run"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    per_trial = float(re.search(r"GPU-hours at 40% MFU of an H100 \(989 bf16 TFLOP/s\): (\S+)", text).group(1))
    assert 0.1 < per_trial < 10
    sweep = float(re.search(r"whole sweep: 32 trials x \S+ = (\S+) GPU-hours", text).group(1))
    assert sweep == pytest.approx(32 * per_trial, rel=1e-2)
    tokens = re.search(r"; (\S+) training tokens", text).group(1)
    assert tokens.endswith("M") or tokens.endswith("B")
    assert "titans" in text.split("by enqueued preset:")[1]
    assert list(tmp_path.iterdir()) == []
