"""Acceptance test in a real browser: a finished sweep as a user meets it in the MLflow UI.

Debian's headless Chromium, driven by selenium through Debian's chromedriver (never a downloaded one), opens the
runs table of `mlflow server` on the sweep's store: the parent run expands to the trials named by architecture, a
trial's page shows the metrics MLflow stores, the parent's artifacts show the Pareto-front plot, and the
`tags.best = 'true'` filter leaves the Pareto trials. Screenshots of each page go to $MIRASWEEP_TEST_ARTIFACTS
(default test-artifacts/browser/) for a person to look at. Without a browser the test is skipped, unless
MIRASWEEP_REQUIRE_BROWSER=1 (CI), where it fails.

Selectors are text, roles, test ids and hrefs: MLflow's CSS class names are generated and change between builds.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from sweeps.report import pareto_trials, tag_best
from sweeps.sweep import run_sweep

from .test_report import non_dominated
from .test_sweep import load, sweep_config

# the tests share one finished sweep (a module fixture): one pytest-xdist worker builds it
pytestmark = pytest.mark.xdist_group("browser")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 45  # generous: two slow cores, shared with other work
REPO = Path(__file__).resolve().parents[2]


def _missing() -> str | None:
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[test]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} not found (apt-get install {package})"
    return None


def _require_browser() -> None:
    reason = _missing()
    if reason and os.environ.get("MIRASWEEP_REQUIRE_BROWSER") == "1":
        pytest.fail(f"MIRASWEEP_REQUIRE_BROWSER=1 but {reason}")
    if reason:
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(tracking_uri: str, log: Path):
    """`mlflow server` on the store, on loopback; yields its base URL once it answers; always stopped."""
    exe = Path(sys.executable).with_name("mlflow")
    port = _free_port()
    cmd = [*([str(exe)] if exe.exists() else [sys.executable, "-m", "mlflow"]), "server", "--backend-store-uri",
           tracking_uri, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        _stop(proc)


def _stop(proc) -> None:
    """SIGTERM to the server's process group, SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _wait_http(base: str, proc, log: Path, timeout_s: float = 90) -> None:
    deadline = time.time() + timeout_s
    while True:
        try:
            if urllib.request.urlopen(f"{base}/health", timeout=2).status == 200:
                return
        except OSError:
            pass
        assert proc.poll() is None, f"mlflow server exited:\n{log.read_text()[-3000:]}"
        assert time.time() < deadline, f"mlflow server did not answer in {timeout_s}s:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)


@contextlib.contextmanager
def chromium(profile: Path, shots: Path):
    """Headless Chromium with a fresh profile; on a failure inside, the page as it was goes to shots/failure.*"""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1600,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # a driver path: no Selenium Manager
    try:
        driver.set_page_load_timeout(WAIT_S)
        yield driver
    except BaseException:
        with contextlib.suppress(Exception):
            driver.save_screenshot(str(shots / "failure.png"))
            page = driver.find_element("tag name", "body").text
            (shots / "failure.txt").write_text(f"{driver.current_url}\n\n{page}")
        raise
    finally:
        driver.quit()


def _shots_dir() -> Path:
    out = Path(os.environ.get("MIRASWEEP_TEST_ARTIFACTS") or REPO / "test-artifacts" / "browser")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _screenshot(driver, path: Path) -> None:
    """A PNG of the page that is more than a blank window: the signature, a real size, many colours."""
    from PIL import Image

    assert driver.save_screenshot(str(path)), path
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, (path, len(data))
    with Image.open(path) as image:
        assert image.width >= 1000 and image.height >= 600, image.size
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50, f"{path} looks blank"


def _xpath_literal(text: str) -> str:
    assert "'" not in text, text
    return f"'{text}'"


def _close_assistant(driver) -> None:
    """The MLflow Assistant side panel takes a third of the window: closed, when it is there, for the shots."""
    from selenium.webdriver.common.by import By

    close = "//button[@aria-label='Close'][contains(@data-component-id, 'assistant')]"
    for button in driver.find_elements(By.XPATH, close):
        with contextlib.suppress(Exception):
            button.click()


def _expand(driver, wait, parent: str, children: set[str]) -> None:
    """Expand the parent's row until its children's rows show. The UI remembers expanded rows across page
    loads, so a row may already be open: the + is clicked only while no child has shown for a few seconds."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    toggle = (By.XPATH, f"//div[@role='gridcell'][.//a[normalize-space()={_xpath_literal(parent)}]]//button")
    links = " or ".join(f"contains(@href, '/runs/{run}')" for run in children)
    wait.until(EC.element_to_be_clickable(toggle))
    _close_assistant(driver)
    deadline, clicked = time.time() + WAIT_S, 0.0
    while not any(a.is_displayed() for a in driver.find_elements(By.XPATH, f"//a[{links}]")):
        assert time.time() < deadline, f"the nested runs of {parent!r} never showed"
        if time.time() - clicked > 5:
            driver.find_element(*toggle).click()
            clicked = time.time()
        time.sleep(0.25)


def _metric_on_page(driver, wait, name: str) -> str:
    """The value cell next to the metric's name in the run page's Metrics table."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    cell = wait.until(EC.visibility_of_element_located(
        (By.XPATH, f"//div[@role='row'][div[@role='cell'][1][normalize-space()={_xpath_literal(name)}]]"
                   "/div[@role='cell'][2]")))
    return cell.text.strip()


def _assert_same_number(shown: str, stored: float) -> None:
    """Equal up to the digits the page shows (the UI may round; it must not show a different number)."""
    value = float(shown.replace(",", ""))
    decimals = re.fullmatch(r"-?[\d,]*\.(\d+)", shown)
    tolerance = 0.5 * 10 ** -len(decimals.group(1)) if decimals else 1e-9 * max(1.0, abs(stored))
    assert abs(value - stored) <= tolerance + 1e-12, (shown, stored)


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    """A finished 3-trial debug sweep of the quick space (its first trial the deltanet preset), shared by the tests
    here: (report table, sweep context)."""
    _require_browser()
    root = tmp_path_factory.mktemp("browser-sweep")
    with pytest.MonkeyPatch.context() as mp:  # the per-test cache fixture is not set up yet for a module fixture
        mp.setenv("MIRASWEEP_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        config, choices = sweep_config(root, "launcher=debug", "sweep.n_trials=3",  # a ladder for the frontier plot
                                       "search_space.budget.tasks.mqar.task.ladder=128x8")
        return run_sweep(config, choices)


def test_sweep_runs_trial_metrics_and_pareto_plot_in_the_mlflow_ui(tmp_path, finished_sweep):
    _require_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    table, ctx = finished_sweep
    study = load(ctx)
    client = MlflowClient(ctx["tracking_uri"])
    trials = [t for t in study.get_trials() if "mlflow_run_id" in t.user_attrs]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(trials) == 3 and complete
    directions = [o["direction"] for o in ctx["space"]["objectives"]]
    assert {r["trial"] for r in table} == non_dominated({t.number: t.values for t in complete}, directions)
    tag_best(study, client)  # what the sweep's refresh does; idempotent when it already did
    experiment = client.get_run(ctx["parent_run_id"]).info.experiment_id
    shots = _shots_dir()
    log = tmp_path / "mlflow-server.log"

    with mlflow_server(ctx["tracking_uri"], log) as (base, proc), chromium(tmp_path / "profile", shots) as driver:
        _wait_http(base, proc, log)
        wait = WebDriverWait(driver, WAIT_S)
        runs_table = f"{base}/#/experiments/{experiment}/runs?workflowType=machine_learning"

        # 1. the runs table: the parent run, expanded to its nested trials named by architecture
        driver.get(runs_table)
        parent_name = f"sweep {ctx['study_name']}"
        _expand(driver, wait, parent_name, {t.user_attrs["mlflow_run_id"] for t in trials})
        for t in trials:
            link = wait.until(EC.visibility_of_element_located(
                (By.XPATH, f"//a[contains(@href, '/runs/{t.user_attrs['mlflow_run_id']}')]")))
            assert link.text.strip() == t.user_attrs["architecture"], (t.number, link.text)
        _screenshot(driver, shots / "01_runs_table.png")

        # 2. a completed trial's page (opened from the table): its metrics as MLflow stores them
        trial = complete[0]
        run_id = trial.user_attrs["mlflow_run_id"]
        driver.find_element(By.XPATH, f"//a[contains(@href, '/runs/{run_id}')]").click()
        wait.until(EC.url_contains(f"/runs/{run_id}"))
        wait.until(EC.visibility_of_element_located(
            (By.XPATH, f"//*[normalize-space(text())={_xpath_literal(trial.user_attrs['architecture'])}]")))
        stored = client.get_run(run_id).data.metrics
        shown = [m for m in ("val/bpb", "val/ppl", "recall/mqar") if m in stored]
        assert {"val/bpb", "recall/mqar"} <= set(shown)
        for metric in shown:
            _assert_same_number(_metric_on_page(driver, wait, metric), stored[metric])
        assert stored["val/bpb"] == pytest.approx(trial.values[0]) and stored["recall/mqar"] == pytest.approx(
            trial.values[1])  # and they are the study's objective values
        _close_assistant(driver)
        _screenshot(driver, shots / "02_trial_run.png")

        # 3. the parent's artifacts: the Pareto front and Zoology's recall-vs-state frontier previewed as images
        driver.get(f"{base}/#/experiments/{experiment}/runs/{ctx['parent_run_id']}/artifacts"
                   "?workflowType=machine_learning")
        node = "//*[@data-testid='artifact-tree-node'][normalize-space()={}]"
        wait.until(EC.element_to_be_clickable((By.XPATH, node.format("'plots'")))).click()
        for shot, plot in (("03_pareto_front_artifact.png", "pareto_front.png"),
                           ("03b_recall_vs_state_artifact.png", "recall_vs_state.png")):
            wait.until(EC.element_to_be_clickable((By.XPATH, node.format(_xpath_literal(plot))))).click()
            title = f"//*[normalize-space(text())='plots/{plot}']"  # the preview's heading
            wait.until(EC.visibility_of_element_located((By.XPATH, title)))
            image = wait.until(EC.visibility_of_element_located((By.XPATH, f"//img[@alt='plots/{plot}']")))
            wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image))
            assert driver.execute_script("return arguments[0].naturalWidth", image) >= 400
            _close_assistant(driver)
            _screenshot(driver, shots / shot)

        # 4. the runs table filtered on the best tag: exactly the Pareto trials under the parent
        best = {t.user_attrs["mlflow_run_id"] for t in pareto_trials(study)}
        driver.get(runs_table + "&searchFilter=" + urllib.parse.quote("tags.best = 'true'"))
        _expand(driver, wait, parent_name, best)

        def listed(d) -> set[str]:  # the trial runs in the table (a hash change re-renders it, not at once)
            links = d.find_elements(By.XPATH, "//div[@role='gridcell']//a[contains(@href, '/runs/')]")
            return {a.get_attribute("href").rsplit("/", 1)[-1] for a in links} - {ctx["parent_run_id"]}

        with contextlib.suppress(TimeoutException):
            wait.until(lambda d: listed(d) == best)
        assert listed(driver) == best
        _close_assistant(driver)
        _screenshot(driver, shots / "04_runs_filtered_best.png")


@contextlib.contextmanager
def mirasweep_ui(sweep_dir: str, log: Path):
    """`mirasweep ui SWEEP_DIR` (this checkout's, not an installed script's) on a free loopback port; yields the URL
    it prints once the server answers."""
    port = _free_port()
    cmd = [sys.executable, "-m", "sweeps.cli", "ui", sweep_dir, "--port", str(port)]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    try:
        _wait_http(f"http://127.0.0.1:{port}", proc, log)
        printed = re.search(r"MLflow UI for sweep '[^']*': (\S+)", log.read_text())
        assert printed, log.read_text()[-3000:]
        yield printed.group(1), port
    finally:
        _stop(proc)


def test_mirasweep_ui_url_opens_trials_with_architecture_objective_and_cost_columns(tmp_path, finished_sweep):
    """The URL `mirasweep ui` prints opens the runs table on the trials alone, sorted by the first objective, with
    the architecture, preset, every objective and the cost columns on screen: nothing picked from "Columns", nothing
    clicked (a fresh browser profile: no column choice remembered from before)."""
    _require_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from sweeps.tracking.mlflow_view import SHARED_VIEW_TAG, VIEW_KEY

    _, ctx = finished_sweep
    client = MlflowClient(ctx["tracking_uri"])
    experiment = client.get_run(ctx["parent_run_id"]).info.experiment_id
    objectives = [(o["metric"], o["direction"]) for o in ctx["space"]["objectives"]]
    assert [m for m, _ in objectives] == ["val/bpb", "recall/mqar"]  # the quick space: each its task's only producer
    trials = client.search_runs([experiment], "tags.state IS NOT NULL", max_results=100)
    assert len(trials) == 3 and "deltanet" in {r.data.tags.get("preset") for r in trials}  # trial runs say their preset
    log = tmp_path / "mirasweep-ui.log"

    with mirasweep_ui(ctx["sweep_dir"], log) as (url, port), chromium(tmp_path / "profile", _shots_dir()) as driver:
        assert url == (f"http://127.0.0.1:{port}/#/experiments/{experiment}/runs"
                       f"?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}")
        assert SHARED_VIEW_TAG + VIEW_KEY in client.get_experiment(experiment).tags
        driver.get(url)
        wait = WebDriverWait(driver, WAIT_S)

        def on_screen(d, header: str, column: str):
            """The column's header cell, when it shows `header` inside the table's visible width."""
            for cell in d.find_elements(By.XPATH, f"//div[contains(@class, 'ag-header-cell')][@col-id='{column}']"):
                if cell.is_displayed() and cell.text.strip() == header and d.execute_script(
                        "const r = arguments[0].getBoundingClientRect(), v = arguments[0].closest("
                        "'.ag-header-viewport').getBoundingClientRect();"
                        "return r.width > 0 && r.left >= v.left - 1 && r.right <= v.right + 1;", cell):
                    return cell
            return None

        wanted = {"architecture": "tags.`architecture`", "preset": "tags.`preset`",
                  **{m: f"metrics.`{m}`" for m, _ in objectives}, "cost/params": "metrics.`cost/params`"}
        for header, column in wanted.items():
            wait.until(lambda d: on_screen(d, header, column), f"column {header!r} is not on screen")
        shown = {h.text.strip() for h in driver.find_elements(By.CSS_SELECTOR, ".ag-header-cell") if h.is_displayed()}
        assert {"Source", "Models", "Dataset"}.isdisjoint(shown), shown  # MLflow's default columns, replaced

        # the trials alone (no parent, no per-task runs), sorted by the first objective in its direction
        first, direction = objectives[0]
        done = [r for r in trials if first in r.data.metrics]
        expected = [r.info.run_id for r in sorted(done, key=lambda r: r.data.metrics[first],
                                                    reverse=direction == "maximize")]

        def listed(d) -> list[str]:  # run ids by row position, from the Run Name links
            rows = d.find_elements(By.XPATH, "//div[contains(@class, 'ag-pinned-left-cols-container')]"
                                             "/div[@role='row'][.//a[contains(@href, '/runs/')]]")
            ordered = sorted(rows, key=lambda row: int(row.get_attribute("row-index")))
            return [row.find_element(By.XPATH, ".//a[contains(@href, '/runs/')]").get_attribute("href")
                    .rsplit("/", 1)[-1] for row in ordered]

        wait.until(lambda d: len(listed(d)) == len(trials), "the trial rows never showed")
        rows = listed(driver)
        assert set(rows) == {r.info.run_id for r in trials} and rows[:len(expected)] == expected, (rows, expected)
        _screenshot(driver, _shots_dir() / "05_runs_table_sweep_view.png")
