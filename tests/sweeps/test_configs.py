"""Every shipped config composes (lightning-hydra-template's test): each model preset with each task gives a
valid architecture spec, task and training config, before any tensor is built."""
from __future__ import annotations

from pathlib import Path

import pytest

from components.models import conf_dir, list_presets
from sweeps.train.compose import compose
from components.training import TrainConfig
from sweeps.train.run import build_spec, build_task

TASK_CONFIGS = sorted(p.stem for p in (Path(conf_dir()) / "task").glob("*.yaml"))


@pytest.mark.parametrize("task", TASK_CONFIGS)
@pytest.mark.parametrize("model", list_presets())
def test_train_config_composes(model, task):
    config, choices = compose("train", [f"model={model}", f"task={task}"])
    assert choices == {"model": model, "task": task}
    task_obj = build_task(config["task"])
    spec = build_spec(config["model"], task_obj, preset=model)
    assert spec.vocab_size == task_obj.vocab_size and spec.preset == model
    TrainConfig.from_dict(config["train"])


def test_every_task_config_names_a_registered_task_and_its_metrics():
    for task in TASK_CONFIGS:
        config, _ = compose("train", [f"task={task}"])
        metrics = build_task(config["task"]).metrics()
        assert metrics and set(metrics.values()) <= {"minimize", "maximize"}
