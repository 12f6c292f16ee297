"""Launcher configs without a cluster: every sweep config group option composes and validates, the SLURM YAML
becomes the sbatch script a user expects, and bad launcher keys are refused before anything is created."""
from __future__ import annotations

from pathlib import Path

import pytest
from submitit.slurm.slurm import _make_sbatch_string

from components.models import conf_dir
from components.options import ComponentError
from sweeps.launchers import slurm_parameters, validate
from sweeps.study import make_pruner, make_sampler
from sweeps.sweep import prepare
from sweeps.train.compose import compose

from .test_sweep import cli


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(conf_dir()) / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["search_space", "launcher", "sampler", "pruner"])
def test_every_sweep_config_group_option_composes_and_validates(group, tmp_path):
    assert options(group)
    for option in options(group):
        config, choices = compose("sweep", [f"{group}={option}", f"sweep.dir={tmp_path / option}"])
        assert choices[group] == option
        if group == "pruner":  # pruners are for single-objective spaces
            make_pruner(config["pruner"], multi_objective=False)
            continue
        if group == "sampler":
            make_sampler(config["sampler"], 0, multi_objective=True)
        space, ctx = prepare(config, choices)
        assert ctx["launcher"]["name"] == config["launcher"]["name"]
    assert not any(tmp_path.iterdir())  # validation creates nothing


def test_the_slurm_yaml_becomes_the_sbatch_script(tmp_path):
    config, choices = compose("sweep", [
        "launcher=slurm", "launcher.workers=6", "launcher.array_parallelism=3", "launcher.partition=gpu",
        "launcher.gpus_per_task=1", "launcher.cpus_per_worker=8", "launcher.mem_gb=32", "launcher.timeout_min=720",
        "launcher.account=lab", "launcher.qos=high", "launcher.constraint=a100",
        "launcher.setup=[module load cuda/12.4]", "launcher.additional_parameters={exclusive: true}",
        f"sweep.dir={tmp_path / 'sweep'}"])
    _, ctx = prepare(config, choices)
    assert ctx["threads"] == 8  # torch threads = the CPUs asked of SLURM (the worker then follows what it got)
    params = slurm_parameters(ctx, ctx["launcher"])
    script = _make_sbatch_string(command="python -m submitit.core._submit", folder=str(tmp_path), map_count=6, **params)
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-task=1", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --mem=32768M", "#SBATCH --time=720", "#SBATCH --account=lab", "#SBATCH --qos=high",
                 "#SBATCH --constraint=a100", "#SBATCH --exclusive", "#SBATCH --array=0-5%3",
                 "#SBATCH --signal=USR2@120", "#SBATCH --job-name=mirasweep-quick", "module load cuda/12.4"):
        assert line in script, line


@pytest.mark.parametrize("launcher, message", [
    ({"name": "slurm", "partiton": "gpu"}, "launcher.partiton: unknown key for launcher 'slurm'"),
    ({"name": "local", "partition": "gpu"}, "launcher.partition: unknown key for launcher 'local'"),
    ({"name": "slurm", "setup": "module load cuda"}, "launcher.setup must be a list of shell lines"),
    ({"name": "slurm", "timeout_min": -5}, "launcher.timeout_min must be a non-negative integer"),
    ({"name": "kubernetes"}, "unknown launcher 'kubernetes'; known launchers: debug, local, slurm"),
])
def test_bad_launcher_settings_name_the_key_and_the_allowed_values(launcher, message):
    with pytest.raises(ComponentError, match=message.replace("(", r"\(")):
        validate(launcher)


def test_a_misspelt_slurm_key_exits_2_and_creates_nothing(tmp_path):
    out = cli(["sweep", f"sweep.dir={tmp_path / 'sweep'}", "launcher=slurm", "launcher.partiton=gpu"], tmp_path)
    assert out.returncode == 2, out.stderr
    assert "launcher.partiton: unknown key for launcher 'slurm'" in out.stderr and "partition" in out.stderr
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("said, setting", [
    ("sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified",
     "launcher.account"),
    ("sbatch: error: Batch job submission failed: Invalid qos specification", "launcher.qos"),
    ("sbatch: error: Batch job submission failed: Invalid feature specification", "launcher.constraint"),
    ("sbatch: error: Memory specification can not be satisfied", "launcher.mem_gb"),
    ("sbatch: error: Invalid generic resource (gres) specification", "launcher.gpus_per_task"),
    ("sbatch: error: Batch job submission failed: Requested time limit is invalid", "launcher.timeout_min"),
    ("sbatch: error: Something nobody expected", "launcher (the sbatch options"),
])
def test_sbatch_refusals_name_the_launcher_setting_behind_them(said, setting):
    from submitit.core.utils import FailedJobError

    from sweeps.sweep import launch_error

    message = launch_error({"name": "slurm", "account": "physics"}, FailedJobError(said))
    assert message.startswith(setting) and said in message and message.endswith("nothing was started")


def test_no_sbatch_on_the_machine_is_one_message_with_the_way_out():
    from sweeps.sweep import launch_error

    message = launch_error({"name": "slurm"}, FileNotFoundError(2, "No such file or directory", "sbatch"))
    assert message.startswith("launcher=slurm: no SLURM on this machine (sbatch not found)")
    assert "launcher=local" in message
