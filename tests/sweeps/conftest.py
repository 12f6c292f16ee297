"""Shared fixtures: an isolated cache directory and one MLflow SQLite store per test module (creating the
store runs MLflow's migrations, a few seconds)."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MIRASWEEP_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory) -> str:
    from sweeps.tracking import Tracker

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    Tracker(uri, experiment="warm-up")  # create the schema once
    return uri
