"""MIRASWEEP_TEST_DEVICE=cuda runs the component tests with torch's default device set to the GPU (factory calls
without a device allocate there), e.g. on a GPU node: MIRASWEEP_TEST_DEVICE=cuda python -m pytest tests/components.
The default, cpu, changes nothing."""
from __future__ import annotations

import os

import pytest
import torch

DEVICE = os.environ.get("MIRASWEEP_TEST_DEVICE", "cpu")


@pytest.fixture(autouse=True)
def _default_device():
    if DEVICE == "cpu":
        yield
        return
    if DEVICE.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip(f"MIRASWEEP_TEST_DEVICE={DEVICE} but no CUDA device is visible")
    with torch.device(DEVICE):
        yield
