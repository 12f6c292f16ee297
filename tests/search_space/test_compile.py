"""Compilation: define-by-run suggestions with hierarchical names, plan checks, preset enqueueing."""
from __future__ import annotations

import optuna
import pytest
from omegaconf import OmegaConf

from components.models import conf_dir, resolve_spec
from search_space import SearchSpace, TrialPlan, load_space
from search_space.compile import replay

from .helpers import space_dict, with_memory

SHIPPED = ["delta_family", "miras", "paper_170m", "quick", "titans_family"]
optuna.logging.set_verbosity(optuna.logging.WARNING)


def study_for(space: SearchSpace, seed: int = 0) -> optuna.Study:
    return optuna.create_study(directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=seed))


def ask(space: SearchSpace, n: int, seed: int = 0) -> list[tuple[optuna.trial.Trial, TrialPlan]]:
    study = study_for(space, seed)
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append((trial, space.suggest(trial)))
    return out


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_space_compiles_and_every_plan_passes_or_has_a_reason(name):
    space = load_space(name)
    declared = space.parameters()
    for trial, plan in ask(space, 6, seed=3):
        assert plan.params == trial.params
        for key, dist in trial.distributions.items():  # one distribution per name, whatever the branch
            assert declared[key] == dist, key
        reason = space.check(plan)
        if reason is None:
            spec = resolve_spec(plan.model)
            assert spec.name
        else:
            assert isinstance(reason, str) and reason


def quick_with_lr() -> SearchSpace:
    """The quick space with its learning rate searched (it ships fixed)."""
    data = load_space("quick").to_dict()
    return SearchSpace.from_dict({**data, "train": {"lr": {"float": [1.0e-3, 1.0e-2], "log": True}}})


def test_conditional_parameters_exist_only_under_their_parent():
    space = quick_with_lr()
    seen = set()
    for _, plan in ask(space, 40, seed=1):
        structure = plan.params["memory.structure"]
        seen.add(structure)
        assert ("memory.structure.mlp.depth" in plan.params) == (structure == "mlp")
        assert plan.model["memory"]["structure"]["name"] == structure
        if structure == "mlp":
            depth = plan.params["memory.structure.mlp.depth"]
            assert plan.model["memory"]["structure"] == {"name": "mlp", "depth": depth, "expansion": 2.0}
        assert plan.values["dim"] == 64 and "dim" not in plan.params  # fixed values are not parameters
        assert set(plan.train) == {"lr"} and plan.params["train.lr"] == plan.train["lr"]
    assert seen == {"linear", "mlp"}


def test_backbone_branches_hold_their_options_attention_and_model_keys():
    data = space_dict(model={
        "dim": 16, "layers": 1,
        "backbone": {"choice": {"memory": {},
                                "mac": {"segment": {"categorical": [8, 16]},
                                        "memory": {"chunk_size": 4, "structure": {"choice": ["linear", "mlp"]}}},
                                "transformer": {"window": {"categorical": [0, 8]}}}},
        "memory": {"heads": 2, "chunk_size": 8, "structure": "linear"},
        "attention": {"heads": {"categorical": [1, 2]}},
    })
    space = SearchSpace.from_dict(data)
    assert set(space.parameters()) == {"backbone", "backbone.mac.segment", "backbone.mac.memory.structure",
                                       "backbone.transformer.window", "attention.heads"}
    seen = set()
    for _, plan in ask(space, 30, seed=2):
        backbone = plan.params["backbone"]
        seen.add(backbone)
        assert ("backbone.mac.segment" in plan.params) == (backbone == "mac")
        assert ("backbone.mac.memory.structure" in plan.params) == (backbone == "mac")
        assert ("attention.heads" in plan.params) == (backbone != "memory")  # only backbones with attention
        if backbone == "mac":
            assert plan.model["memory"]["chunk_size"] == 4 and plan.model["memory"]["heads"] == 2
            assert plan.model["memory"]["structure"]["name"] == plan.params["backbone.mac.memory.structure"]
        elif backbone == "memory":
            assert plan.model["memory"] == {"heads": 2, "chunk_size": 8, "structure": {"name": "linear"}}
        else:
            assert "memory" not in plan.model and resolve_spec(plan.model).memory is None
        assert space.check(plan) is None, plan
    assert seen == {"memory", "mac", "transformer"}


def test_fixed_trial_and_replay_give_the_same_plan():
    space = load_space("titans_family")
    (_, plan), = ask(space, 1, seed=5)
    assert space.suggest(optuna.trial.FixedTrial(plan.params)) == plan
    assert replay(space, plan.params) == plan


def _enqueue_cases():
    return [(name, preset) for name in SHIPPED for preset in load_space(name).enqueue]


@pytest.mark.parametrize("name,preset", _enqueue_cases())
def test_enqueued_preset_reproduces_the_preset_architecture(name, preset):
    space = load_space(name)
    params = space.enqueue_params(preset)
    study = study_for(space)
    study.enqueue_trial(params)
    trial = study.ask()
    plan = space.suggest(trial)
    assert {k: trial.params[k] for k in params} == params
    got, want = resolve_spec(plan.model), resolve_spec(preset)
    assert got.backbone == want.backbone
    assert got.name == want.name
    for axis in ("structure", "bias", "retention", "algorithm"):
        assert getattr(got.memory, axis) == getattr(want.memory, axis), axis
    # keys the preset file sets itself (not the sizes it leaves to the space) come out the same too
    raw = OmegaConf.to_container(OmegaConf.load(conf_dir() / "model" / f"{preset}.yaml"))
    for key in set(raw.get("memory") or {}) - {"structure", "bias", "retention", "algorithm"}:
        assert getattr(got.memory, key) == getattr(want.memory, key), key


def test_enqueue_maps_preset_layer_keys_onto_the_space():
    space = SearchSpace.from_dict(with_memory(chunk_size={"categorical": [8, 16]}, heads=2,
                                              structure={"choice": {"linear": {}, "mlp": {"depth": {"int": [1, 2]},
                                                                                          "bias": True,
                                                                                          "norm_affine": True}}},
                                              bias={"choice": ["l2", "dot"]},
                                              algorithm={"choice": ["gd", "ttt_gd"]}))
    # mlp depth 1, chunk_size 16 in its file; expansion 4 = default; its fixed inner biases and LN affine fit the space's
    params = space.enqueue_params("ttt_linear")
    assert params == {"memory.chunk_size": 16, "memory.structure": "mlp", "memory.structure.mlp.depth": 1,
                      "memory.bias": "l2", "memory.algorithm": "ttt_gd"}
    params = space.enqueue_params("deltanet")  # sets no chunk_size: the sampler picks it
    assert "memory.chunk_size" not in params and params["memory.structure"] == "linear"
    # sizes the preset leaves to the space do not matter, even where their first values do not fit together
    odd = SearchSpace.from_dict(with_memory(heads={"categorical": [3, 2]}))
    assert odd.enqueue_params("deltanet") == {"memory.structure": "linear", "memory.bias": "l2",
                                              "memory.algorithm": "gd"}


def test_check_reasons():
    data = with_memory(algorithm={"choice": ["gd", "implicit"]}, bias="l2")
    data["constraints"] = {"forbid": [{"memory.structure": "mlp", "memory.structure.mlp.depth": 2}]}
    space = SearchSpace.from_dict(data)
    fixed = optuna.trial.FixedTrial
    ok = space.suggest(fixed({"memory.structure": "linear", "memory.algorithm": "implicit"}))
    assert space.check(ok) is None
    bad = space.suggest(fixed({"memory.structure": "mlp", "memory.structure.mlp.depth": 1,
                               "memory.algorithm": "implicit"}))
    assert space.check(bad) == ("model.memory: algorithm 'implicit' is incompatible with structure 'mlp': the "
                                "implicit step has a closed form only for a linear memory")
    deep = space.suggest(fixed({"memory.structure": "mlp", "memory.structure.mlp.depth": 2,
                                "memory.algorithm": "gd"}))
    assert space.check(deep) == ("forbidden by constraints.forbid[0]: memory.structure=mlp, "
                                 "memory.structure.mlp.depth=2")
    shallow = space.suggest(fixed({"memory.structure": "mlp", "memory.structure.mlp.depth": 1,
                                   "memory.algorithm": "gd"}))
    assert space.check(shallow) is None

    small = SearchSpace.from_dict({**data, "constraints": {"max_params": 1000}})
    assert "parameters exceed constraints.max_params = 1,000" in small.check(ok)
    tight = SearchSpace.from_dict({**data, "constraints": {"max_state": 10}})
    reason = tight.check(ok)
    assert "exceeds constraints.max_state = 10" in reason and "at 32 tokens" in reason  # the lm task's seq_len
    odd = SearchSpace.from_dict(with_memory(heads=3))
    (_, plan), = ask(odd, 1)
    assert "dim 16 is not divisible by 3 heads" in odd.check(plan)


def test_trial_settings_merge_budget_and_plan():
    from components.training import TrainConfig
    from components.tasks import TASKS

    space = quick_with_lr()
    (_, plan), = ask(space, 1)
    settings = space.trial_settings(plan)
    assert list(settings) == ["lm", "mqar"]
    for name, s in settings.items():
        cfg = TrainConfig.from_dict(s["train"])
        assert cfg.steps == space.budget.tasks[name].train["steps"] and cfg.lr == plan.params["train.lr"]
        task = dict(s["task"])
        assert TASKS.create(task.pop("name"), **task).name == name
