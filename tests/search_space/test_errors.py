"""Validation: each class of bad input gives one ComponentError naming the YAML path and what is allowed."""
from __future__ import annotations

import pytest

from search_space import SearchSpace

from .helpers import BASE, error, space_dict, with_memory


def model(**keys) -> dict:
    return space_dict(model={**BASE["model"], **keys})


def test_unknown_option_names_the_path_the_closest_option_and_all_options():
    msg = error(with_memory(structure={"choice": {"linear": {}, "mlp": {"depht": {"int": [1, 2]}}}}))
    assert msg == ("search_space 't': model.memory.structure.choice.mlp.depht: unknown option 'depht' (did you mean "
                   "'depth'?); options of structure 'mlp': depth, expansion, activation, residual, bias, norm_affine")
    msg = error(model(backbone={"choice": {"memory": {}, "mac": {"segmnt": 16}}}))
    assert msg.startswith("search_space 't': model.backbone.choice.mac.segmnt: unknown option 'segmnt' (did you mean "
                          "'segment'?); options of backbone 'mac': segment, persistent")


def test_unknown_component_lists_the_registered_ones():
    msg = error(with_memory(structure={"choice": ["linear", "mpl"]}))
    assert msg == ("search_space 't': model.memory.structure.choice.mpl: unknown structure 'mpl' (did you mean "
                   "'mlp'?); known structure components: linear, mlp, swiglu")
    assert "model.memory.bias: unknown bias 'l3'" in error(with_memory(bias="l3"))


@pytest.mark.parametrize("data,path,allowed", [
    (model(layers={"int": [3, 1]}), "model.layers", "bad range [3, 1]: lo > hi"),
    (with_memory(structure={"name": "mlp", "depth": {"int": [1, 9]}}), "model.memory.structure.depth",
     "bad range [1, 9]: option 'depth' of structure 'mlp' is declared in [1, 6]"),
    (with_memory(structure={"name": "mlp", "depth": 9}), "model.memory.structure.depth",
     "option 'depth' of structure 'mlp' must be in [1, 6], got 9"),
    (with_memory(structure={"name": "mlp", "activation": {"categorical": ["gelu", "gleu"]}}),
     "model.memory.structure.activation.categorical[1]", "must be one of {gelu, silu, tanh, relu}, got 'gleu'"),
    (space_dict(train={"weight_decay": {"float": [0.0, 0.1], "log": True}}), "train.weight_decay",
     "bad range [0.0, 0.1]: log scale needs lo > 0"),
    (with_memory(chunk_size={"int": [8, 17], "step": 4}), "model.memory.chunk_size", "hi - lo must be a multiple"),
    (with_memory(read="aftr"), "model.memory.read", "must be one of {after, before}, got 'aftr'"),
])
def test_bad_range(data, path, allowed):
    msg = error(data)
    assert msg.startswith(f"search_space 't': {path}: ") and allowed in msg, msg


@pytest.mark.parametrize("data,path,closest,allowed", [
    ({**space_dict(), "objectivs": []}, "objectivs", "objectives", "name, description, plugins, objectives"),
    (with_memory(chunk_sise=8), "model.memory.chunk_sise", "chunk_size", "structure, bias, retention, algorithm"),
    (with_memory(chunk_size={"int": [8, 16], "lgo": True}), "model.memory.chunk_size.lgo", "log", "int, step, log"),
    (with_memory(chunk_size={"itn": [8, 16]}), "model.memory.chunk_size", "int", "{int: [lo, hi]}"),
    (model(dimm=16), "model.dimm", "dim", "backbone, dim, layers, mlp_hidden, memory, attention"),
    (space_dict(constraints={"max_param": 10}), "constraints.max_param", "max_params", "max_params, max_state, forbid"),
    (space_dict(objectives=[{"metrc": "val/bpb"}]), "objectives[0].metrc", "metric", "metric, direction, task"),
])
def test_unknown_key_anywhere(data, path, closest, allowed):
    msg = error(data)
    assert msg.startswith(f"search_space 't': {path}: ") and f"(did you mean '{closest}'?)" in msg, msg
    assert allowed in msg, msg


@pytest.mark.parametrize("data,path,allowed", [
    (with_memory(structure={"categorical": ["linear", "mlp"]}), "model.memory.structure", "use {choice: [...]}"),
    (model(dim={"choice": [16, 32]}), "model.dim", "use {categorical: [...]}"),
    (with_memory(structure={"name": "mlp", "activation": {"int": [1, 2]}}), "model.memory.structure.activation",
     "takes a string in {gelu, silu, tanh, relu}; use {categorical: [...]}"),
    (with_memory(structure={"name": "mlp", "depth": {"float": [1, 2]}}), "model.memory.structure.depth",
     "is an integer: use {int: [lo, hi]}"),
    (with_memory(structure={"name": {"categorical": ["linear"]}}), "model.memory.structure.name",
     "expected a structure name (linear, mlp, swiglu)"),
    (model(memory={"categorical": [None]}), "model.memory", "put distributions on its keys (structure, bias"),
    (with_memory(chunk_size=[8, 16]), "model.memory.chunk_size", "use {categorical: [...]}"),
    (model(vocab_size=512), "model.vocab_size", "each budget task sets the model's vocabulary"),
    (space_dict(train={"steps": {"int": [1, 10]}}), "train.steps", "set budget.tasks.<task>.train.steps"),
])
def test_distribution_on_something_that_cannot_take_it(data, path, allowed):
    msg = error(data)
    assert msg.startswith(f"search_space 't': {path}: ") and allowed in msg, msg


def test_forbid_names_a_parameter_that_does_not_exist_or_a_value_it_never_takes():
    msg = error(space_dict(constraints={"forbid": [{"memory.structur": "linear"}]}))
    assert msg.startswith("search_space 't': constraints.forbid[0].memory.structur: no parameter 'memory.structur' in "
                          "this space (did you mean 'memory.structure'?); its parameters: dim, layers, memory.heads, "
                          "memory.chunk_size, memory.structure, memory.structure.mlp.depth, memory.bias"), msg
    msg = error(space_dict(constraints={"forbid": [{"memory.structure": "swiglu"}]}))
    assert msg == ("search_space 't': constraints.forbid[0].memory.structure: swiglu is not a value of "
                   "'memory.structure': {categorical: [linear, mlp]}")
    msg = error(space_dict(constraints={"forbid": [{"memory.structure.mlp.depth": 3}]}))
    assert "{int: [1, 2]}" in msg


def test_objective_metric_no_budget_task_produces():
    msg = error(space_dict(objectives=[{"metric": "recall/mqr", "direction": "maximize"}]))
    assert msg == ("search_space 't': objectives[0].metric: 'recall/mqr' is not produced by any budget task (did you "
                   "mean 'recall/mqar'?); the budget tasks produce lm: val/loss, val/ppl, val/bpb; mqar: recall/mqar, "
                   "val/loss")
    msg = error(space_dict(objectives=[{"metric": "val/loss"}]))
    assert msg.startswith("search_space 't': objectives[0]: 'val/loss' is produced by several budget tasks (lm, mqar)")
    msg = error(space_dict(objectives=[{"metric": "val/bpb", "direction": "maximize"}]))
    assert msg == "search_space 't': objectives[0].direction: 'val/bpb' of task 'lm' is to minimize, not maximize"


def test_enqueue_unknown_or_unrepresentable_preset():
    msg = error(space_dict(enqueue=["deltanet", "titan"]))
    assert msg.startswith("search_space 't': enqueue[1]: unknown model preset 'titan' (did you mean 'titans'?); "
                          "known presets: deltanet, gated_deltanet"), msg
    msg = error(space_dict(enqueue=["longhorn"]))
    assert msg == ("search_space 't': enqueue[0]: preset 'longhorn' is outside this space: memory.algorithm = implicit "
                   "is not among its choices gd, momentum")
    msg = error(space_dict(enqueue=["titans"]))
    assert msg.startswith("search_space 't': enqueue[0]: preset 'titans' is outside this space: memory.retention is "
                          "decay in the preset but none here")
    data = with_memory(retention={"choice": ["none", "decay"]}, structure={"name": "mlp", "expansion": 2.0})
    data["enqueue"] = ["titans"]
    msg = error(data)
    assert "memory.structure.mlp.expansion is 4.0 in the preset but 2.0 here" in msg, msg


def test_unknown_budget_task_train_key_or_task_option():
    data = space_dict()
    data["budget"]["tasks"]["lmm"] = data["budget"]["tasks"].pop("lm")
    assert error(data) == ("search_space 't': budget.tasks.lmm: unknown task 'lmm' (did you mean 'lm'?); known task "
                           "components: lm, mqar, niah")
    data = space_dict()
    data["budget"]["tasks"]["lm"]["train"]["stpes"] = 3
    msg = error(data)
    assert msg.startswith("search_space 't': budget.tasks.lm.train: unknown key 'stpes' (did you mean 'steps'?); "
                          "allowed keys: steps, batch_size, accumulate, lr"), msg
    msg = error(space_dict(train={"lrr": {"float": [0.1, 0.2]}}))
    assert msg.startswith("search_space 't': train.lrr: unknown key 'lrr' (did you mean 'lr'?); allowed keys "
                          "(TrainConfig): steps, batch_size"), msg
    data = space_dict()
    data["budget"]["tasks"]["mqar"]["task"]["pairz"] = 3
    assert "budget.tasks.mqar.task: task 'mqar' has no option 'pairz' (did you mean 'pairs'?)" in error(data)
    data = space_dict()
    data["budget"]["rungs"] = [5, 20]
    assert error(data) == "search_space 't': budget.rungs[1]: rung 20 is beyond the 10 training steps of task 'lm'"


def test_valid_base_space_parses():
    assert SearchSpace.from_dict(space_dict()).name == "t"
