"""What a run gets out of its device: MFU against the device's peak, the run's own peak memory, and the engine path
its memory layers took, recorded on every training run."""
from __future__ import annotations

import pytest
import torch
from mlflow.tracking import MlflowClient

from components.models import ArchitectureSpec, LanguageModel
from components.models.accounting import forward_flops_per_token
from sweeps.train import utilization
from sweeps.train.run import run_training
from sweeps.train.utilization import PeakMemory, peak_tflops
from sweeps.tracking import Tracker

from .test_train import config


@pytest.mark.parametrize("name, peak", [("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0),
                                        ("NVIDIA H200", 989.0), ("NVIDIA A100-SXM4-80GB", 312.0),
                                        ("NVIDIA L4", 121.0), ("NVIDIA A10G", 70.0)])
def test_gpu_peaks_come_from_the_datasheet_table(monkeypatch, name, peak):
    monkeypatch.setattr(utilization, "device_name", lambda device: name)
    assert peak_tflops(torch.device("cuda"))[0] == peak


def test_unknown_gpu_has_no_mfu_unless_the_peak_is_given(monkeypatch):
    monkeypatch.setattr(utilization, "device_name", lambda device: "Some Accelerator 9000")
    peak, source = peak_tflops(torch.device("cuda"))
    assert peak is None and "train.peak_tflops" in source
    assert peak_tflops(torch.device("cuda"), 400.0) == (400.0, "train.peak_tflops")


def test_cpu_peak_is_a_measured_matmul_rate():
    peak, source = peak_tflops(torch.device("cpu"))
    assert source == "measured fp32 matmul"
    n = 512  # an independent, cruder measurement lands within a factor of a few of it
    a = torch.randn(n, n)
    import time

    t = time.perf_counter()
    for _ in range(20):
        a @ a
    rate = 20 * 2 * n**3 / (time.perf_counter() - t) / 1e12
    assert rate / 4 < peak < rate * 4


def test_cpu_peak_memory_is_the_regions_own():
    first = PeakMemory(torch.device("cpu")).start()
    big = torch.ones(64 * 2**20)  # 256 MiB, touched
    high = first.mib()
    del big
    second = PeakMemory(torch.device("cpu")).start()
    low = second.mib()
    assert second.resettable, "this Linux lets a process reset its peak RSS"
    assert high - low > 200  # the second region does not inherit the first one's peak


def test_run_records_mfu_peak_memory_and_engine_path(tmp_path, mlflow_uri):
    tracker = Tracker(mlflow_uri, experiment="utilization-test")
    result = run_training(config(), tmp_path / "run", tracker=tracker)
    m = result.metrics
    spec = ArchitectureSpec.from_dict(config()["model"])
    flops = 3 * forward_flops_per_token(LanguageModel(spec), config()["task"]["seq_len"])
    assert m["perf/train_flops_per_token"] == pytest.approx(flops)
    params = MlflowClient(mlflow_uri).get_run(tracker.run_id).data.params
    assert params["execution.memory_path"] == "exact"  # linear memory, l2 bias: the exact chunked form on a CPU
    assert params["execution.peak_source"] == "measured fp32 matmul"
    peak = float(params["execution.peak_tflops"])
    assert m["perf/achieved_tflops"] == pytest.approx(flops * m["perf/tokens_per_s"] / 1e12)
    assert m["perf/mfu"] == pytest.approx(m["perf/achieved_tflops"] / peak)
    assert 0 < m["perf/mfu"] < 1
    # the resident set during the run: torch and the model (tens of MiB at least), far below the machine
    assert 50 < m["perf/peak_mem_mib"] < 8192
    logged = MlflowClient(mlflow_uri).get_run(tracker.run_id).data.metrics
    assert logged["perf/mfu"] == pytest.approx(m["perf/mfu"]) and "perf/peak_mem_mib" in logged
