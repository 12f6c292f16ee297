"""Bad input, one table per class: each case runs the real command in an empty folder and must end with exit status
2, one message naming the YAML path or argument (and what is allowed), no traceback, and nothing created: no folder,
study, MLflow store or run. Sizes run under a 6 GiB address-space limit, so a check that allocated would crash."""
from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from components.conf import package_conf_dir

QUICK = (package_conf_dir() / "search_space" / "quick.yaml").read_text()
LIMIT = 6 << 30  # bytes of address space: torch and MLflow import in far less; a 1e9-wide model would not


def run(args: list[str], cwd: Path, limit: int | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("mirasweep")
    cmd = [str(exe), *args] if exe.exists() else [sys.executable, "-m", "sweeps.cli", *args]
    pre = (lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))) if limit else None
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, preexec_fn=pre)


def check(tmp_path: Path, args: list[str], needles: tuple[str, ...], files: dict[str, str] | None = None,
          limit: int | None = None) -> None:
    for name, text in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    out = run(args, tmp_path, limit)
    assert out.returncode == 2, (args, out.returncode, out.stderr[-2000:])
    assert "Traceback" not in out.stderr, out.stderr
    error = [line for line in out.stderr.splitlines() if line.startswith("mirasweep: error:")]
    assert len(error) == 1, out.stderr
    text = out.stderr[out.stderr.index("mirasweep: error:"):]
    for needle in needles:
        assert needle in text, (args, needle, text)
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before, f"created: {sorted(set(after) - set(before))}"


ENQUEUE = next(line for line in QUICK.splitlines() if line.startswith("enqueue:"))


def space(*edits: tuple[str, str]) -> str:
    """The quick space with (old, new) replacements."""
    text = QUICK
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    return text


# --------------------------------------------------------------------------- YAML syntax and duplicate keys
YAML_CASES = {
    "space-duplicate-key": (["sweep", "search_space=mine.yaml"], {"mine.yaml": QUICK + "budget: {}\n"},
                            ("mine.yaml", f"line {QUICK.count(chr(10)) + 1}", "duplicate key budget")),
    "space-syntax": (["sweep", "search_space=./mine.yaml", "--dry-run"], {"mine.yaml": QUICK.replace("rungs: [75, 150]", "rungs: [75, 150")},
                     ("mine.yaml", "line", "expected ','")),
    "space-in-conf-folder": (["sweep", "search_space=mine"], {"conf/search_space/mine.yaml": "a: [1\n"},
                             ("conf/search_space/mine.yaml", "line")),
    "model-preset-file": (["train", "model=conf/model/m.yaml"], {"conf/model/m.yaml": "memory:\n  bias: l2\n  bias: dot\n"},
                          ("m.yaml", "duplicate key bias")),
    "space-not-a-mapping": (["sweep", "search_space=mine.yaml"], {"mine.yaml": "- 1\n- 2\n"}, ("mine.yaml", "mapping")),
    "missing-file": (["sweep", "search_space=./nowhere.yaml"], {}, ("search_space=./nowhere.yaml", "no such file")),
}


@pytest.mark.parametrize("case", YAML_CASES)
def test_yaml_syntax_errors_and_duplicate_keys(tmp_path, case):
    args, files, needles = YAML_CASES[case]
    check(tmp_path, args, needles, files)


# --------------------------------------------------------------------------- sizes: counted, never allocated
SIZE_CASES = {
    "train-wide": (["train", "model=deltanet", "model.dim=1000000000"], {}, ("dim=1000000000", "larger than a tensor")),
    "train-wide-fits-no-machine": (["train", "model=deltanet", "model.dim=200000"], {}, ("parameters need", "GiB")),
    "train-deep": (["train", "model=deltanet", "model.layers=1000000"], {}, ("layers=1000000", "parameters need")),
    "space-wide": (["sweep", "search_space=wide.yaml", "--dry-run"], {"wide.yaml": space(("dim: 64", "dim: 1000000000"))},
                   ("no valid architecture", "dim=1000000000", "larger than a tensor")),
    "space-deep": (["sweep", "search_space=deep.yaml"], {"deep.yaml": space(("layers: 2\n", "layers: 1000000\n"))},
                   ("no valid architecture", "exceed constraints.max_params")),
}


@pytest.mark.parametrize("case", SIZE_CASES)
def test_a_size_that_cannot_fit_is_refused_without_allocating(tmp_path, case):
    args, files, needles = SIZE_CASES[case]
    check(tmp_path, args, needles, files, limit=LIMIT)


# --------------------------------------------------------------------------- spaces with no valid combination
NOT_DIVISIBLE = space(("dim: 64", "dim: 30"), ("heads: 2", "heads: 4"))
ONLY_FORBIDDEN = space(("forbid:", "forbid:\n    - {memory.algorithm: gd}\n    - {memory.algorithm: momentum}"),
                       (ENQUEUE, ""))
INCOMPATIBLE = space(("algorithm: {choice: [gd, momentum]}", "algorithm: implicit"), ("        linear: {}\n", ""),
                     ("    - {memory.structure: linear, memory.algorithm: momentum}\n", ""), (ENQUEUE, ""))
EMPTY_CASES = {
    "not-divisible": ("nd.yaml", NOT_DIVISIBLE, ("no valid architecture", "256 x", "not divisible by 4 heads")),
    "only-forbidden": ("of.yaml", ONLY_FORBIDDEN, ("no valid architecture", "x forbidden by constraints.forbid")),
    "only-incompatible": ("ic.yaml", INCOMPATIBLE, ("no valid architecture", "component combinations are rejected",
                                                    "implicit")),
}


@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "sweep"])
@pytest.mark.parametrize("case", EMPTY_CASES)
def test_a_space_with_no_valid_combination_is_an_error_that_counts_why(tmp_path, case, dry):
    name, text, needles = EMPTY_CASES[case]
    check(tmp_path, ["sweep", f"search_space={name}", *(["--dry-run"] if dry else [])], needles, {name: text})


# --------------------------------------------------------------------------- stores
STORE_CASES = {
    "unknown-scheme": ("sweep.storage=foo://x", ("sweep.storage='foo://x'", "unknown database scheme 'foo'", "journal:PATH")),
    "journal-no-path": ("sweep.storage=journal:", ("sweep.storage='journal:'", "needs a file path")),
    "not-a-url": ("sweep.storage=just words", ("sweep.storage='just words'", "not a storage URL")),
    "missing-driver": ("sweep.storage=mysql://u@localhost/db", ("sweep.storage=", "driver is not installed")),
    "tracking-folder": ("tracking.uri=./mlruns", ("tracking.uri='./mlruns'", "not a tracking store")),
    "tracking-scheme": ("tracking.uri=foo://x", ("tracking.uri='foo://x'", "unknown database scheme")),
}


@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "sweep"])
@pytest.mark.parametrize("case", STORE_CASES)
def test_a_malformed_storage_or_tracking_url(tmp_path, case, dry):
    arg, needles = STORE_CASES[case]
    check(tmp_path, ["sweep", arg, *(["--dry-run"] if dry else [])], needles)


# --------------------------------------------------------------------------- the dry run checks the run's options
DRY_CASES = {
    "trials": ("sweep.n_trials=0", ("sweep.n_trials must be >= 1",)),
    "trials-type": ("sweep.n_trials=many", ("sweep.n_trials='many'", "expected an integer")),
    "sampler-group": ("sampler=annealing", ("unknown sampler 'annealing'", "tpe")),
    "sampler-name": ("sampler.name=annealing", ("unknown sampler 'annealing'", "known samplers")),
    "pruner-multi": ("pruner=median", ("single-objective",)),
    "workers": ("launcher.workers=0", ("launcher.workers must be >= 1",)),
    "launcher-key": ("launcher.partition=gpu", ("launcher.partition", "unknown key")),
    "cost-gpu": ("cost.gpu=B300", ("cost.gpu='B300'", "known GPUs: H200, H100")),
    "cost-mfu": ("cost.mfu=1.5", ("cost.mfu=1.5", "(0, 1]")),
}


LAYOUT_CASES = {
    "both": (["launcher.gpus_per_trial=2", "launcher.ranks_per_trial=2"], ("gpus_per_trial and launcher.ranks_per_trial",)),
    "nodes": (["launcher.ranks_per_trial=3", "launcher.nodes_per_trial=2"], ("launcher.nodes_per_trial=2", "3 ranks")),
    "negative": (["launcher.gpus_per_trial=-1"], ("launcher.gpus_per_trial must be a non-negative integer",)),
}


@pytest.mark.parametrize("case", LAYOUT_CASES)
def test_a_data_parallel_trial_layout_is_checked_before_submitting(tmp_path, case):
    args, needles = LAYOUT_CASES[case]
    check(tmp_path, ["sweep", "launcher=slurm", *args, "--dry-run"], needles)


@pytest.mark.parametrize("case", DRY_CASES)
def test_the_dry_run_validates_what_the_sweep_validates(tmp_path, case):
    arg, needles = DRY_CASES[case]
    check(tmp_path, ["sweep", arg, "--dry-run"], needles)


# --------------------------------------------------------------------------- train: inputs before anything exists
TRAIN_CASES = {
    "missing-corpus": (["task.corpus=path", "task.path=nowhere.txt"], ("task option 'path'", "nowhere.txt")),
    "empty-corpus-folder": (["task.corpus=path", "task.path=empty"], ("holds no files",)),
    "option-of-another-corpus": (["task.path=x.txt"], ("option 'path' is read only with corpus=path",)),
    "missing-tokenizer-file": (["task.tokenizer=file", "task.tokenizer_path=nowhere.json"],
                               ("task option 'tokenizer_path'", "nowhere.json")),
    "tokenizer-file-without-path": (["task.tokenizer=file"], ("tokenizer=file needs the option 'tokenizer_path'",)),
    "option-of-another-tokenizer": (["task.vocab_size=1000"], ("option 'vocab_size' is read only with tokenizer=bpe",)),
    "unknown-tokenizer": (["task.tokenizer=sentencepiece"], ("option 'tokenizer'", "bytes, bpe, file")),
    "bad-tracking": (["tracking.uri=mlruns"], ("tracking.uri='mlruns'",)),
    "not-divisible": (["model.dim=30", "model.memory.heads=4"], ("model.memory.heads", "not divisible")),
    "parallel-mode": (["train.parallel=zero"], ("train.parallel must be one of auto, ddp, fsdp", "'zero'")),
}


@pytest.mark.parametrize("case", TRAIN_CASES)
def test_train_checks_its_inputs_before_creating_anything(tmp_path, case):
    args, needles = TRAIN_CASES[case]
    (tmp_path / "empty").mkdir()
    check(tmp_path, ["train", "model=deltanet", "train.steps=2", *args], needles)


# --------------------------------------------------------------------------- keys that do not exist or mistyped
KEY_CASES = {
    "hydra-hint-top-level": (["train", "+dim=-3"], ("dim:", "no top-level key 'dim'", "did you mean model.dim")),
    "sweep-key-typo": (["sweep", "sweep.n_trial=3"], ("sweep.n_trial", "did you mean 'n_trials'")),
    "tracking-key": (["sweep", "tracking.urx=3"], ("tracking.urx", "uri, experiment")),
    "train-key": (["train", "train.stepz=3"], ("stepz", "did you mean 'steps'")),
    "sweep-type": (["sweep", "sweep.seed=1.5"], ("sweep.seed=1.5", "expected an integer")),
    "unknown-group-option": (["train", "task=mqr"], ("unknown task 'mqr'", "did you mean 'mqar'")),
    "config-dir-missing": (["sweep", "--config-dir", "nowhere", "--dry-run"], ("--config-dir nowhere", "no such folder")),
}


@pytest.mark.parametrize("case", KEY_CASES)
def test_unknown_or_mistyped_keys(tmp_path, case):
    args, needles = KEY_CASES[case]
    check(tmp_path, args, needles)
