"""The `mirasweep` command line, run as a user would (a subprocess of the installed console script)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from components.engine import AXES


def mirasweep(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("mirasweep")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "sweeps.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_components_json_lists_every_registered_component_with_options():
    out = mirasweep("components", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    from components.layers.couplings import GATE_COUPLINGS

    assert list(data) == [*AXES, "gate_coupling"]  # the four axes, then the layer's gate couplings
    for axis, reg in {**AXES, "gate_coupling": GATE_COUPLINGS}.items():
        assert [c["name"] for c in data[axis]["components"]] == list(reg)
    mlp = next(c for c in data["structure"]["components"] if c["name"] == "mlp")
    depth = next(o for o in mlp["options"] if o["name"] == "depth")
    assert depth == {"name": "depth", "type": "int", "default": 2, "help": "number of linear layers", "low": 1, "high": 6}


def test_components_table_is_readable():
    out = mirasweep("components")
    assert out.returncode == 0, out.stderr
    for name in ("mlp", "huber", "lq", "momentum", "implicit"):
        assert name in out.stdout


@pytest.mark.parametrize("args,fragment", [(["components", "--axis", "bais"], "--axis must be one of")])
def test_bad_arguments_exit_2_with_a_clear_message(args, fragment):
    out = mirasweep(*args)
    assert out.returncode == 2 and fragment in out.stderr


def test_model_card_of_a_preset_with_overrides():
    out = mirasweep("components", "--model", "titans", "--set", "dim=64", "--set", "memory.structure.depth=3", "--json")
    assert out.returncode == 0, out.stderr
    card = json.loads(out.stdout)
    assert card["architecture"] == "mlp3·l2·decay·momentum" and card["spec"]["dim"] == 64
    assert card["params"] > 0 and card["state"]["512"] == card["state"]["2048"]
    assert "Titans" in card["provenance"]
    assert card["engine_path"] == {"cpu": "fused", "cuda": "fused"}  # an MLP memory: our fused step on either
    delta = json.loads(mirasweep("components", "--model", "gated_deltanet", "--json").stdout)
    assert delta["engine_path"] == {"cpu": "exact", "cuda": "fla"}  # fla-core is in the test environment
    table = mirasweep("components", "--model", "transformer")
    assert table.returncode == 0 and "FLOPs/token" in table.stdout
    assert "conv_size=4" in table.stdout  # the attention row: the preset's short convolution over q/k/v


@pytest.mark.parametrize("args, message", [
    (("--model", "titan"), "did you mean 'titans'"),
    (("--model", "titans", "--set", "memory.bias.name=hubr"), "did you mean 'huber'"),
    (("--model", "titans", "--set", "layers"), "key=value"),
])
def test_model_card_bad_input_exits_2_with_the_fix(args, message):
    out = mirasweep("components", *args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_model_card_flags_a_rule_that_fp32_cannot_reproduce():
    steady = json.loads(mirasweep("components", "--model", "deltanet", "--json").stdout)["fp32_check"]
    assert steady["ok"] and max(steady["drift"].values()) <= steady["bound"]
    fast_decay = ("--set", "memory.retain_init=0.99")  # Moneta's x + LN(MLP) memory turning 0.14 rad per token
    chaotic = json.loads(mirasweep("components", "--model", "moneta", *fast_decay, "--json").stdout)["fp32_check"]
    assert not chaotic["ok"] and chaotic["verdict"].startswith("fp32 parts from float64")
    assert "FLAGGED" in mirasweep("components", "--model", "moneta", *fast_decay).stdout
