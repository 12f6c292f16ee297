"""Training: a tracked run on CPU, resume after a kill, repeatability, and a clear stop on divergence."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from components.options import ComponentError
from sweeps.train import NonFiniteLoss
from sweeps.train.run import run_training
from sweeps.tracking import Tracker

TINY_MODEL = {"dim": 32, "layers": 1, "memory": {"heads": 2, "chunk_size": 16, "structure": "linear", "bias": "l2",
                                                  "retention": "decay", "algorithm": "gd"}}
TINY_LM = {"name": "lm", "seq_len": 32, "max_bytes": 200_000, "eval_bytes": 2048}
TINY_TRAIN = {"steps": 12, "batch_size": 4, "eval_every": 6, "log_every": 2, "checkpoint_every": 4, "warmup": 2,
              "progress": False, "threads": 1}


def config(**train):
    return {"model": TINY_MODEL, "task": TINY_LM, "train": {**TINY_TRAIN, **train}}


def test_tracked_run_records_params_metric_history_and_artifacts(tmp_path, mlflow_uri):
    tracker = Tracker(mlflow_uri, experiment="train-test")
    result = run_training(config(), tmp_path / "run", preset="custom", tracker=tracker)
    assert result.metrics["val/bpb"] < 8.0  # below a uniform byte model after 12 steps
    client = MlflowClient(mlflow_uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["model.memory.bias.name"] == "l2" and params["model.memory.retention.granularity"] == "head"
    assert params["task.name"] == "lm" and params["train.steps"] == "12" and params["preset"] == "custom"
    assert run.data.tags["architecture"] == "linear·l2·decay·gd" and len(run.data.tags["content_hash"]) == 12
    history = client.get_metric_history(tracker.run_id, "val/bpb")
    assert sorted(m.step for m in history) == [6, 12, 12]  # two evaluations, then the finals
    assert len(client.get_metric_history(tracker.run_id, "train/loss")) == 6
    assert run.data.metrics["cost/params"] > 0 and run.data.metrics["data/unigram_bpb"] > 3
    artifacts = {f.path for d in ("config", "spec") for f in client.list_artifacts(tracker.run_id, d)}
    assert artifacts == {"config/config.json", "spec/architecture.json", "spec/model_card.md"}
    # a finished directory is not trained again
    again = run_training(config(), tmp_path / "run", preset="custom", tracker=tracker)
    assert again.metrics == json.loads((tmp_path / "run" / "result.json").read_text())["metrics"]


def test_same_seed_same_metrics_on_cpu(tmp_path, mlflow_uri):
    a = run_training(config(steps=6), tmp_path / "a", tracker=Tracker(mlflow_uri, "train-test"))
    b = run_training(config(steps=6), tmp_path / "b", tracker=Tracker(mlflow_uri, "train-test"))
    assert a.metrics["val/loss"] == b.metrics["val/loss"]


def test_compiled_memory_layers_train_to_the_eager_metrics(tmp_path, mlflow_uri):
    """train.compile=true runs every memory layer's chunk step through torch.compile; the run ends with the eager
    run's metrics up to float rounding (the compiled kernels may sum in another order)."""
    import torch._dynamo.utils

    eager = run_training(config(steps=4), tmp_path / "eager", tracker=Tracker(mlflow_uri, "train-test"))
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    compiled = run_training(config(steps=4, compile=True), tmp_path / "compiled", tracker=Tracker(mlflow_uri, "train-test"))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > graphs  # compiled, not silently eager
    assert compiled.metrics["val/loss"] == pytest.approx(eager.metrics["val/loss"], rel=1e-4)
    assert compiled.metrics["val/bpb"] == pytest.approx(eager.metrics["val/bpb"], rel=1e-4)


def test_train_compile_applies_to_compilable_rules_only(capsys):
    from components.layers import MemoryLayer
    from components.models import build_model
    from sweeps.train import TrainConfig
    from sweeps.train.loop import compile_memory_layers

    with pytest.raises(ComponentError, match=r"train.compile must be true or false, got 'yes'"):
        TrainConfig.from_dict({"compile": "yes"})
    titans = build_model("titans", ["dim=16", "layers=2", "memory.heads=2"])
    assert compile_memory_layers(titans) == 2
    assert all(m.compile for m in titans.modules() if isinstance(m, MemoryLayer))
    swiglu = build_model("deltanet", ["dim=16", "layers=1", "memory.heads=2", "memory.structure=swiglu"])
    assert compile_memory_layers(swiglu) == 0  # the torch.func path is not compiled, and the run says so
    assert "swiglu·l2·none·gd runs on the torch.func path and stays eager" in capsys.readouterr().out


def test_diverging_run_stops_with_the_reason_and_a_failed_run(tmp_path, mlflow_uri):
    tracker = Tracker(mlflow_uri, experiment="train-test")
    with pytest.raises(NonFiniteLoss, match="non-finite loss at step"):
        run_training(config(lr=1e9, grad_clip=1e12), tmp_path / "run", tracker=tracker)
    run = MlflowClient(mlflow_uri).get_run(tracker.run_id)
    assert run.info.status == "FAILED" and "non-finite loss" in run.data.tags["failure_reason"]


def _cli(args, cwd, **kw):
    exe = Path(sys.executable).with_name("mirasweep")
    cmd = [str(exe), "train", *args] if exe.exists() else [sys.executable, "-m", "sweeps.cli", "train", *args]
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ}, **kw)


CLI_ARGS = ["model=deltanet", "model.dim=32", "model.layers=1", "model.memory.heads=2", "model.memory.chunk_size=16",
            "task.seq_len=32", "task.max_bytes=200000", "task.eval_bytes=2048", "train.steps=16", "train.batch_size=4",
            "train.eval_every=8", "train.checkpoint_every=2", "train.progress=false", "train.threads=1",
            "train.warmup=2"]


def _wait_for_checkpoint(run_dir: Path, proc) -> None:
    deadline = time.time() + 60
    while not (run_dir / "checkpoint.pt").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.05)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "SIGINT"])
def test_resume_after_a_kill_ends_with_the_uninterrupted_metrics(tmp_path, mlflow_uri, how):
    common = CLI_ARGS + [f"tracking.uri={mlflow_uri}", "tracking.experiment=resume"]
    straight = _cli(common + [f"out_dir={tmp_path / 'straight'}"], tmp_path)
    assert straight.wait(120) == 0, straight.communicate()
    run_dir = tmp_path / "killed"
    proc = _cli(common + [f"out_dir={run_dir}"], tmp_path)
    _wait_for_checkpoint(run_dir, proc)
    proc.send_signal(getattr(signal, how))
    code = proc.wait(60)
    out, err = proc.communicate()
    assert code == (-signal.SIGKILL if how == "SIGKILL" else 3), out + err  # Ctrl-C checkpoints like SIGTERM
    assert "Traceback" not in err
    resumed = _cli(common + [f"out_dir={run_dir}"], tmp_path)
    assert resumed.wait(120) == 0, resumed.communicate()
    expected = json.loads((tmp_path / "straight" / "result.json").read_text())
    got = json.loads((run_dir / "result.json").read_text())
    assert got["metrics"]["val/loss"] == expected["metrics"]["val/loss"]
    assert [h[1]["val/loss"] for h in got["history"]] == [h[1]["val/loss"] for h in expected["history"]]
    run = MlflowClient(mlflow_uri).get_run(got["run_id"])  # one MLflow run across the interruption
    assert run.info.status == "FINISHED"


def test_cli_exit_statuses(tmp_path, mlflow_uri):
    bad = _cli(["model=titan"], tmp_path)
    out, err = bad.communicate(timeout=60)
    assert bad.returncode == 2 and "unknown model 'titan' (did you mean 'titans'?)" in err
    typo = _cli(CLI_ARGS + ["train.stepz=3", f"tracking.uri={mlflow_uri}"], tmp_path)
    out, err = typo.communicate(timeout=60)
    assert typo.returncode == 2 and "did you mean 'steps'" in err
    assert not (tmp_path / "runs").exists()  # nothing half-created
    diverge = _cli(CLI_ARGS + ["train.lr=1e9", "train.grad_clip=1e12", f"tracking.uri={mlflow_uri}",
                               f"out_dir={tmp_path / 'd'}"], tmp_path)
    out, err = diverge.communicate(timeout=120)
    assert diverge.returncode == 4 and "non-finite loss" in err


@pytest.mark.parametrize("task", [
    {"name": "mqar", "seq_len": 32, "pairs": 4, "eval_examples": 32, "ladder": "64x8"},
    {"name": "niah", "train_len": 80, "eval_lengths": "80,120", "eval_examples": 8},
])
def test_tiny_tracked_run_on_each_recall_task(tmp_path, mlflow_uri, task):
    tracker = Tracker(mlflow_uri, experiment="train-test")
    cfg = {"model": TINY_MODEL, "task": task, "train": {**TINY_TRAIN, "steps": 4, "eval_every": 2}}
    result = run_training(cfg, tmp_path / "run", tracker=tracker)
    client = MlflowClient(mlflow_uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.params["task.name"] == task["name"]
    metric = "recall/mqar" if task["name"] == "mqar" else "recall/niah@120"
    assert 0.0 <= result.metrics[metric] <= 1.0
    logged = metric.replace("@", "_at_")  # MLflow's name rules
    assert [m.step for m in client.get_metric_history(tracker.run_id, logged)][:2] == [2, 4]
    if task["name"] == "mqar":  # the ladder is scored after training only
        assert [m.step for m in client.get_metric_history(tracker.run_id, "recall/mqar_at_64x8")] == [4, 4]


def test_a_model_fp32_cannot_reproduce_over_the_task_context_is_flagged_before_training(tmp_path, mlflow_uri, capsys):
    """Moneta's rule with a fast decay (alpha 0.99) is chaotic (tests/components/test_numerics.py): over a 1024-byte
    context the run says so on stderr, in a tag and in numerics/fp32_drift; a linear memory over the same context
    does not."""
    chaotic = {"dim": 32, "layers": 1, "memory": {"heads": 4, "structure": "mlp", "bias": {"name": "lp", "p": 3.0},
                                                   "retention": {"name": "lq", "q": 4.0}, "algorithm": "gd",
                                                   "retain_init": 0.99}}
    long_lm = {**TINY_LM, "seq_len": 1024}
    client = MlflowClient(mlflow_uri)
    runs = {}
    for name, model in (("chaotic", chaotic), ("linear", TINY_MODEL)):
        tracker = Tracker(mlflow_uri, experiment="train-test")
        run_training({"model": model, "task": long_lm, "train": {**TINY_TRAIN, "steps": 2, "batch_size": 1}},
                     tmp_path / name, tracker=tracker)
        runs[name] = client.get_run(tracker.run_id)
    err = capsys.readouterr().err
    assert err.count("mirasweep: warning:") == 1 and "fp32 parts from float64" in err
    assert runs["chaotic"].data.metrics["numerics/fp32_drift"] > 1e-3
    assert "chaotic" in runs["chaotic"].data.tags["numerics"]
    assert runs["linear"].data.metrics["numerics/fp32_drift"] < 1e-4 and "numerics" not in runs["linear"].data.tags
