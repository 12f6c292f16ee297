"""Registries: look-ups with helpful errors, validated options, compatibility checked before tensors."""
from __future__ import annotations

import pytest

from components import ALGORITHMS, BIASES, STRUCTURES, ComponentError, MemoryRule
from components.bias import AttentionalBias
from components.engine import enumerate_rules
from components.options import Option


def test_unknown_name_lists_known_and_closest():
    with pytest.raises(ComponentError) as err:
        STRUCTURES["mpl"]
    msg = str(err.value)
    assert "did you mean 'mlp'" in msg and "linear" in msg and "swiglu" in msg


def test_unknown_option_names_the_component_and_its_options():
    with pytest.raises(ComponentError, match=r"structure 'mlp' has no option 'dept' \(did you mean 'depth'\?\)"):
        STRUCTURES.create("mlp", dept=3)


@pytest.mark.parametrize("opts,fragment", [
    ({"depth": 0}, "must be in [1, 6]"),
    ({"depth": 2.5}, "must be an integer"),
    ({"activation": "swish"}, "must be one of {gelu, silu, tanh, relu}"),
    ({"residual": "yes"}, "must be true or false"),
])
def test_bad_option_values(opts, fragment):
    with pytest.raises(ComponentError) as err:
        STRUCTURES.create("mlp", **opts)
    assert fragment in str(err.value)


@pytest.mark.parametrize("combo,names", [
    (("mlp", "l2", "none", "implicit"), ("algorithm 'implicit'", "structure 'mlp'")),
    (("linear", "huber", "none", "implicit"), ("algorithm 'implicit'", "bias 'huber'")),
    (("mlp", "l2", {"name": "decay", "granularity": "value"}, "gd"), ("retention 'decay'", "structure 'mlp'")),
])
def test_incompatible_combination_names_both_components(combo, names):
    with pytest.raises(ComponentError) as err:
        MemoryRule(*combo)
    for name in names:
        assert name in str(err.value)


def test_rule_names_are_short_and_stable():
    assert MemoryRule({"name": "mlp", "depth": 2}, "huber", "decay", "momentum").name == "mlp2·huber·decay·momentum"
    assert MemoryRule("mlp", {"name": "lp", "p": 3}, {"name": "lq", "q": 4}, "gd").name == "mlp2·l3·lq4·gd"


def test_a_newly_registered_component_joins_the_enumerated_space():
    @BIASES.register("test_cauchy")
    class CauchyBias(AttentionalBias):
        summary = "log(1 + e^2 / c^2), a heavy-tailed bias (test plugin)"
        options = (Option("c", float, 1.0, "scale", low=1e-3, high=10.0),)

        def output_grad(self, yhat, v, gates):
            e = yhat - v
            return 2 * e / (self.c**2 + e * e)

    try:
        rules, _ = enumerate_rules()
        assert any(r.bias.name == "test_cauchy" for r in rules)
    finally:
        BIASES._classes.pop("test_cauchy")


def test_every_component_describes_itself():
    for reg in (STRUCTURES, BIASES, ALGORITHMS):
        for entry in reg.describe():
            assert entry["summary"], entry["name"]
            for opt in entry["options"]:
                assert opt["help"] and "default" in opt
