"""Under pytest-xdist (scripts/test.sh) each worker process computes with one torch thread: the workers already
share the cores, and two threads per worker would only contend."""
from __future__ import annotations

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
