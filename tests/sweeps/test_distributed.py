"""Data-parallel trials on this machine: ranks under torchrun (gloo on CPU) train the global batch in slices and
follow the single-process run's loss curve; rank 0 alone logs to MLflow and writes the run's files."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

BASE = ["model=deltanet", "model.dim=32", "model.layers=1", "model.memory.heads=2", "model.memory.chunk_size=16",
        "train.steps=8", "train.eval_every=4", "train.checkpoint_every=4", "train.log_every=1", "train.warmup=2",
        "train.progress=false", "train.threads=1", "train.fp32_check=false"]
TASKS = {
    "lm": ["task=lm", "task.seq_len=32", "task.max_bytes=200000", "task.eval_bytes=2048", "train.batch_size=8"],
    # rows with different numbers of scored targets (2 or 6 pairs), split unevenly over the ranks, accumulated
    "mqar": ["task=mqar", "task.seq_len=48", "task.pairs=6", "task.train_pairs='2,6'", "task.eval_examples=64",
             "train.batch_size=8", "train.accumulate=2"],
}


def train(cwd: Path, ranks: int, args: list[str]) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent
    if ranks == 1:
        cmd = [str(exe / "mirasweep"), "train", *args]
    else:
        cmd = [str(exe / "torchrun"), "--standalone", f"--nproc-per-node={ranks}", "-m", "sweeps.cli", "train", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def curve(uri: str, run_dir: Path) -> tuple[list[float], dict]:
    client = MlflowClient(uri)
    run = client.get_run((run_dir / "mlflow_run_id").read_text().strip())
    losses = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "train/loss"), key=lambda m: m.step)]
    return losses, run


@pytest.mark.parametrize("task, parallel", [("lm", "ddp"), ("mqar", "ddp"), ("mqar", "fsdp")])
def test_two_ranks_train_the_single_process_loss_curve(tmp_path, task, parallel):
    """2 ranks with 4 rows each of every global batch of 8 = 1 rank with the whole batch: the same loss at every
    step and the same final metrics, to float rounding (the gradient is averaged over ranks instead of summed
    over one batch). MQAR's rows score different numbers of targets: the loss is normalised by the global count.
    FSDP2 (every block's weights, gradients and moments sharded over the ranks) follows the same curve."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [*BASE, *TASKS[task], f"tracking.uri={uri}", f"train.parallel={parallel}"]
    one = train(tmp_path, 1, [*args, "out_dir=one"])
    two = train(tmp_path, 2, [*args, "out_dir=two"])
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    (loss1, run1), (loss2, run2) = curve(uri, tmp_path / "one"), curve(uri, tmp_path / "two")
    assert len(loss1) == len(loss2) == 8
    assert loss2 == pytest.approx(loss1, rel=1e-5)
    finals = [k for k in run1.data.metrics if k.startswith(("val/", "recall/"))]
    assert finals and all(run2.data.metrics[k] == pytest.approx(run1.data.metrics[k], rel=1e-4, abs=1e-6)
                          for k in finals)
    assert run2.data.metrics["perf/ranks"] == 2 and run2.data.params["execution.ranks"] == "2"
    assert run2.data.params["execution.parallel"] == parallel
    runs = MlflowClient(uri).search_runs([run1.info.experiment_id])
    assert len(runs) == 2  # rank 1 opened no run of its own
    assert two.stdout.count("val/") == one.stdout.count("val/")  # one table, printed by rank 0


def test_a_global_batch_that_does_not_divide_over_the_ranks_is_refused(tmp_path):
    out = train(tmp_path, 2, [*BASE, *TASKS["lm"][:-1], "train.batch_size=7", "out_dir=odd",
                              f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"])
    assert out.returncode != 0  # torchrun's own status (and its ChildFailedError report) for ranks that exit 2
    assert "mirasweep: error: train.batch_size=7: the global batch must divide evenly over the 2 ranks" in out.stderr
    assert "exitcode  : 2" in out.stderr and "ComponentError" not in out.stderr  # each rank: our message, status 2
    assert not (tmp_path / "odd").exists()


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_ranks_stop_together_on_a_signal_and_resume_to_the_uninterrupted_metrics(tmp_path, parallel):
    """SIGTERM to torchrun reaches both ranks (its agent forwards it): they agree on one step (a collective on the
    stop flag), rank 0 writes the checkpoint (under FSDP2 the shards gathered into full state dicts), the run is
    KILLED with the reason; the same command resumes both ranks from it to the metrics of a run never interrupted."""
    import json
    import signal
    import time

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [*BASE, *TASKS["lm"], "train.steps=24", "train.eval_every=8", f"tracking.uri={uri}",
            f"train.parallel={parallel}"]
    straight = train(tmp_path, 2, [*args, "out_dir=straight"])
    assert straight.returncode == 0, straight.stderr[-3000:]
    exe = Path(sys.executable).parent / "torchrun"
    cmd = [str(exe), "--standalone", "--nproc-per-node=2", "-m", "sweeps.cli", "train", *args, "out_dir=stopped"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while not (tmp_path / "stopped" / "checkpoint.pt").exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert "SIGTERM at step" in err, err[-3000:]  # our stop, not a kill
    run_id = (tmp_path / "stopped" / "mlflow_run_id").read_text().strip()
    assert MlflowClient(uri).get_run(run_id).info.status == "KILLED"
    assert not (tmp_path / "stopped" / "result.json").exists()
    resumed = train(tmp_path, 2, [*args, "out_dir=stopped"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = json.loads((tmp_path / "straight" / "result.json").read_text())
    got = json.loads((tmp_path / "stopped" / "result.json").read_text())
    assert got["metrics"]["val/loss"] == pytest.approx(expected["metrics"]["val/loss"], rel=1e-6)
    assert got["resumed_from"] > 0 and MlflowClient(uri).get_run(run_id).info.status == "FINISHED"


def test_auto_shards_only_a_model_whose_training_state_would_crowd_one_device():
    import torch

    from components.models.accounting import training_bytes
    from sweeps.train import distributed as dp
    from sweeps.train.fits import device_memory
    from sweeps.train.sharding import FSDP_SHARE, choose

    cpu, two = torch.device("cpu"), dp.World(rank=0, size=2)
    _, have = device_memory("cpu")
    small, big = 10_000, int(FSDP_SHARE * have / training_bytes(1)) + 1  # counted, never allocated
    assert training_bytes(big) > FSDP_SHARE * have >= training_bytes(small)
    assert choose("auto", dp.World(), big, cpu) == "none"  # one process: nothing to share
    assert choose("auto", two, small, cpu) == "ddp" and choose("auto", two, big, cpu) == "fsdp"
    assert choose("ddp", two, big, cpu) == "ddp" and choose("fsdp", two, small, cpu) == "fsdp"  # as asked
