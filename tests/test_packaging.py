"""mirasweep as a user installs it: a built wheel in a fresh virtual environment, run from a folder outside the
checkout, with the user's own search spaces and presets in ./conf, in --config-dir, and given by path."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

# the tests share one built wheel (a module fixture): one pytest-xdist worker builds it
pytestmark = pytest.mark.xdist_group("packaging")

ROOT = Path(__file__).resolve().parents[1]


def test_the_package_list_is_the_source_tree():
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = sorted(".".join(p.parent.relative_to(ROOT).parts) for layer in ("components", "search_space", "sweeps")
                   for p in (ROOT / layer).rglob("__init__.py"))
    groups = [f"mirasweep_conf.{d.name}" for d in (ROOT / "conf").iterdir() if d.is_dir() and any(d.glob("*.yaml"))]
    assert sorted(listed) == sorted(found + ["mirasweep_conf"] + groups)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding only the built wheel; the dependencies come from the test environment's site-packages
    (a plain path entry, so that environment's editable-install hook is not run)."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp / "dist"), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp / "dist").glob("mirasweep-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
                    "--no-index", "-q", str(wheel)], check=True, capture_output=True, timeout=300)
    return venv


def run(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIRASWEEP_", "PYTHONPATH"))}
    return subprocess.run([str(venv / "bin" / "mirasweep"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env)


TINY = """\
name: tiny
objectives: [{metric: val/bpb, direction: minimize}]
budget:
  tasks:
    lm:
      train: {steps: 4, batch_size: 2, warmup: 1, eval_every: 4, eval_batch_size: 4, log_every: 2, checkpoint_every: 4}
      task: {seq_len: 16, max_bytes: 20000, eval_bytes: 512}
model:
  dim: 16
  layers: 1
  memory: {heads: 2, chunk_size: 8, structure: linear, bias: {choice: [dot, l2]}, retention: none, algorithm: gd}
enqueue: [my_delta]
"""


def test_a_wheel_install_runs_the_users_own_spaces_and_presets(installed, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    where = subprocess.run([str(installed / "bin" / "python"), "-c", "import components, mirasweep_conf; "
                            "print(components.__file__); print(mirasweep_conf.__file__)"],
                           cwd=work, capture_output=True, text=True, check=True).stdout.split()
    assert all(str(installed) in w for w in where), where  # the wheel's modules, not the checkout's

    new = run(installed, work, "space", "new", "mine")  # a commented starter file in ./conf
    assert new.returncode == 0, new.stderr
    starter = (work / "conf" / "search_space" / "mine.yaml").read_text()
    assert starter.startswith("# Search space 'mine'") and "name: mine" in starter and "# Leaves" in starter
    assert run(installed, work, "space", "new", "mine").returncode == 2  # never overwritten

    (work / "conf" / "model").mkdir()
    (work / "conf" / "model" / "my_delta.yaml").write_text(
        "# my delta rule\nbackbone: {name: memory}\nmemory: {structure: linear, bias: l2, retention: none, "
        "algorithm: gd}\n")
    card = run(installed, work, "components", "--model", "my_delta", "--json")
    assert card.returncode == 0 and '"provenance": "my delta rule"' in card.stdout, card.stderr

    dry = run(installed, work, "sweep", "search_space=mine", "--dry-run")
    assert dry.returncode == 0 and "search space 'mine'" in dry.stdout, dry.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "tiny.yaml").write_text(TINY)
    by_path = run(installed, work, "sweep", f"search_space={elsewhere / 'tiny.yaml'}", "launcher=debug",
                  "sweep.n_trials=2")
    assert by_path.returncode == 0, by_path.stderr[-3000:]
    assert "best architectures" in by_path.stdout and "(my_delta)" in by_path.stdout  # the user's preset, enqueued
    assert (work / "runs" / "sweeps" / "tiny" / "optuna.db").is_file()

    folder = tmp_path / "configs"
    (folder / "search_space").mkdir(parents=True)
    (folder / "search_space" / "tiny2.yaml").write_text(TINY.replace("name: tiny", "name: tiny2")
                                                        .replace("enqueue: [my_delta]", ""))
    other = tmp_path / "other"
    other.mkdir()
    dry = run(installed, other, "sweep", "search_space=tiny2", "--config-dir", str(folder), "--dry-run")
    assert dry.returncode == 0 and "search space 'tiny2'" in dry.stdout, dry.stderr
    assert run(installed, other, "sweep", "search_space=tiny2", "--dry-run").returncode == 2  # not without it
