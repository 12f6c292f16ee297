"""Parsing: shipped spaces load, every form of the schema round-trips (parse -> to_dict -> parse equal)."""
from __future__ import annotations

from pathlib import Path

import pytest

from components.engine.rule import AXES
from components.options import ComponentError
from search_space import SearchSpace, list_spaces, load_space, spaces_dir
from search_space.schema import Choice, Dist, Fixed

from .helpers import space_dict, with_memory

SHIPPED = ["delta_family", "miras", "paper_170m", "quick", "titans_family"]


def test_shipped_spaces_are_listed_and_start_with_a_comment():
    assert set(SHIPPED) <= set(list_spaces())
    for name in SHIPPED:
        first = (spaces_dir() / f"{name}.yaml").read_text().splitlines()[0]
        assert first.startswith("# ") and len(first) > 20, (name, first)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_space_round_trips(name):
    space = load_space(name)
    assert space.name == name and space.source.endswith(f"{name}.yaml")
    again = SearchSpace.from_dict(space.to_dict())
    assert again == space
    assert again.to_dict() == space.to_dict()


def test_every_form_round_trips():
    data = space_dict(
        description="forms",
        model={
            "dim": {"categorical": [16, 32]},
            "layers": {"int": [1, 4], "step": 3},
            "mlp_hidden": None,
            "backbone": {"choice": [
                "memory",
                {"mac": {"segment": {"int": [8, 64], "log": True}, "memory": {"chunk_size": 16}}},
                {"name": "mal", "window": 32, "dim": 32},
            ]},
            "memory": {
                "heads": 2,
                "exact": None,
                "structure": {"choice": {"linear": None, "mlp": "all"}},
                "bias": {"choice": ["l2", {"name": "huber", "delta": {"float": [0.1, 10.0], "log": True}}]},
                "retention": {"choice": "all"},
                "algorithm": "gd",
            },
            "attention": {"heads": {"categorical": [1, 2]}},
        },
        train={"lr": {"float": [1e-3, 1e-2], "log": True}, "warmup": 2},
        constraints={"max_params": 10**6, "forbid": [{"memory.structure": ["linear", "mlp"],
                                                      "memory.structure.mlp.residual": False}]},
        enqueue=["deltanet"],
        objectives=["val/bpb", {"metric": "val/loss", "task": "mqar"}],
    )
    data["budget"]["rungs"] = [5, 10]
    space = SearchSpace.from_dict(data)
    assert SearchSpace.from_dict(space.to_dict()) == space
    memory = space.model.children["memory"].children
    assert memory["structure"].branches["mlp"].all and memory["retention"].all
    assert memory["algorithm"].fixed and memory["algorithm"] == Choice("algorithm", memory["algorithm"].branches)
    assert memory["bias"].branches["huber"].options["delta"] == Dist("float", 0.1, 10.0, log=True)
    assert space.model.children["layers"] == Dist("int", 1, 4, step=3)
    # objectives: direction from the task; val/loss needs its task named
    assert [(o.metric, o.direction, o.task) for o in space.objectives] == [
        ("val/bpb", "minimize", "lm"), ("val/loss", "minimize", "mqar")]
    assert space.directions == ["minimize", "minimize"] and space.multi_objective


def test_values_are_typed_by_their_option():
    space = SearchSpace.from_dict(with_memory(structure={"name": "mlp", "expansion": 2,
                                                         "depth": {"categorical": [1, 3]}},
                                              bias={"name": "lp", "p": {"categorical": [2, 3]}}))
    mlp = space.model.children["memory"].children["structure"].branches["mlp"]
    assert mlp.options["expansion"] == Fixed(2.0) and isinstance(mlp.options["expansion"].value, float)
    lp = space.model.children["memory"].children["bias"].branches["lp"]
    assert lp.options["p"].choices == (2.0, 3.0) and all(isinstance(v, float) for v in lp.options["p"].choices)


def test_choice_all_is_every_registered_component_and_ranged_option():
    space = SearchSpace.from_dict(with_memory(bias={"choice": "all"}, structure={"choice": "all"}))
    memory = space.model.children["memory"].children
    assert list(memory["bias"].branches) == list(AXES["bias"])
    mlp = memory["structure"].branches["mlp"].options
    assert mlp["depth"] == Dist("int", 1, 6)
    assert mlp["expansion"] == Dist("float", 0.25, 8.0)
    assert mlp["residual"] == Dist("categorical", choices=(False, True))
    assert mlp["activation"].kind == "categorical" and "gelu" in mlp["activation"].choices
    huber = memory["bias"].branches["huber"].options
    assert huber["delta"] == Dist("float", 1e-4, 100.0, log=True)
    params = space.parameters()
    assert "memory.bias.lp.sharpness" in params and params["memory.bias.lp.sharpness"].log


def test_mqar_ladder_metrics_follow_the_ladder_option():
    data = space_dict(objectives=[{"metric": "recall/mqar@64x8"}])
    with pytest.raises(ComponentError, match=r"recall/mqar@64x8.*not produced by any budget task"):
        SearchSpace.from_dict(data)
    data["budget"]["tasks"]["mqar"]["task"]["ladder"] = "64x8"
    space = SearchSpace.from_dict(data)
    assert space.objectives[0].task == "mqar" and space.objectives[0].direction == "maximize"
    assert "recall/mqar@64x8" in space.task_metrics["mqar"]


def test_load_space_by_name_path_and_mapping(tmp_path: Path):
    by_name = load_space("quick")
    by_path = load_space(spaces_dir() / "quick.yaml")
    assert by_name == by_path == load_space(by_name.to_dict())
    copy = tmp_path / "mine.yaml"
    copy.write_text((spaces_dir() / "quick.yaml").read_text().replace("name: quick\n", ""))
    assert load_space(str(copy)).name == "mine"
    with pytest.raises(ComponentError, match=r"unknown search space 'quik' \(did you mean 'quick'\?\); known: "
                                             r"delta_family, miras, paper_170m, quick, titans_family \(searched "):
        load_space("quik")


def test_the_documented_example_parses():
    import search_space.schema as schema
    from omegaconf import OmegaConf

    doc = schema.__doc__
    block = doc[doc.index("    name: quick"):doc.index("\nLeaves") if "\nLeaves" in doc else None]
    block = block[:block.index("\n\n")] if "\n\n" in block else block
    data = OmegaConf.to_container(OmegaConf.create("\n".join(line[4:] for line in block.splitlines())))
    space = SearchSpace.from_dict(data)
    assert space.enqueue == ("titans", "deltanet") and space.budget.rungs == (10, 40)
    assert "memory.structure.mlp.expansion" in space.parameters()


def test_to_dict_is_plain_json():
    import json

    for name in SHIPPED:
        space = load_space(name)
        assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space


def test_importing_search_space_does_not_import_sweeps_or_optuna():
    import subprocess
    import sys

    code = ("import sys, search_space; bad = [m for m in sys.modules if m.split('.')[0] in ('sweeps', 'optuna')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
