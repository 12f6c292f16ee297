"""Dry runs: the size of a space in component combinations (valid vs rejected, with reasons) and sampling."""
from __future__ import annotations

from search_space import SearchSpace, load_space

from .helpers import with_memory


def test_size_counts_combinations_and_reasons_by_hand():
    # structure {linear, mlp} x bias {l2, dot} x algorithm {gd, implicit} = 8 combinations (retention fixed).
    # implicit needs linear + l2: mlp+implicit (2, named with structure), linear+dot+implicit (1, named with bias);
    # the forbid rule removes mlp+dot+gd (mlp+dot+implicit is already incompatible); the rule on depth, an int
    # parameter, cannot be decided without sizes and rejects nothing here.
    data = with_memory(bias={"choice": ["l2", "dot"]}, algorithm={"choice": ["gd", "implicit"]})
    data["constraints"] = {"forbid": [{"memory.structure": "mlp", "memory.bias": "dot"},
                                      {"memory.structure.mlp.depth": 1}]}
    size = SearchSpace.from_dict(data).size()
    assert (size.combinations, size.valid, size.rejected) == (8, 4, 4)
    assert size.reasons == {
        "algorithm 'implicit' is incompatible with structure 'mlp': the implicit step has a closed form only for a "
        "linear memory": 2,
        "algorithm 'implicit' is incompatible with bias 'dot': the implicit step has a closed form only for the l2 "
        "bias": 1,
        "forbidden by constraints.forbid[0]: memory.structure=mlp, memory.bias=dot": 1,
    }
    assert size.parameters == 4  # structure, its mlp depth, bias, algorithm
    assert "8 component combinations: 4 valid, 4 rejected" in str(size)


def test_size_counts_categorical_options_of_chosen_components_only():
    # retention {none, decay(granularity head|value)} = 3 variants; value-channel decay needs a linear memory.
    # structure {linear, mlp(residual true|false)} = 3 variants -> 9 combinations, 2 rejected (mlp x channel).
    data = with_memory(structure={"choice": {"linear": {}, "mlp": {"residual": {"categorical": [True, False]}}}},
                       bias="l2", algorithm="gd",
                       retention={"choice": ["none", {"decay": {"granularity": {"categorical": ["head", "value"]}}}]})
    size = SearchSpace.from_dict(data).size()
    assert (size.combinations, size.valid, size.rejected) == (9, 7, 2)
    (reason, count), = size.reasons.items()
    assert count == 2 and reason.startswith("retention 'decay' is incompatible with structure 'mlp'")


def test_shipped_space_sizes():
    quick = load_space("quick").size()
    assert (quick.combinations, quick.valid, quick.rejected) == (16, 12, 4)
    delta = load_space("delta_family").size()
    assert (delta.combinations, delta.valid) == (21, 21)  # retention none + 6 decay variants (head|value|key x 2), x 3 algorithms


def test_sample_is_reproducible_and_trains_nothing():
    space = load_space("quick")
    first, again, other = space.sample(5, seed=7), space.sample(5, seed=7), space.sample(5, seed=8)
    assert len(first) == 5 and first == again and first != other
    assert all(set(p.params) <= set(space.parameters()) for p in first)
