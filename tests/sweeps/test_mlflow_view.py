"""The sweep's saved view of the MLflow runs table, without a browser (test_mlflow_ui_browser.py opens it in one)."""
from __future__ import annotations

import json

from mlflow.tracking import MlflowClient

from search_space import load_space
from sweeps.tracking.mlflow_view import (CONFIRMED_FILTER, SHARED_VIEW_TAG, confirmed_view_state, objective_metrics,
                                         runs_url, save_view, view_state)


def test_view_state_shows_objectives_then_costs_sorted_by_the_first_objective():
    state = view_state([("recall/mqar", "maximize"), ("val/bpb", "minimize")])
    assert state["selectedColumns"] == state["columnOrder"] == [
        "tags.`architecture`", "tags.`preset`", "metrics.`recall/mqar`", "metrics.`val/bpb`", "metrics.`cost/params`",
        "metrics.`cost/state`", "metrics.`perf/train_flops_per_token`", "metrics.`perf/tokens_per_s`",
        "metrics.`perf/mfu`", "metrics.`perf/peak_mem_mib`", "tags.`best`"]
    assert (state["orderByKey"], state["orderByAsc"]) == ("metrics.`recall/mqar`", False)
    assert state["searchFilter"] == "tags.state IS NOT NULL"


def test_objective_metrics_are_the_names_a_trial_run_logs():
    assert objective_metrics(load_space("quick")) == [("val/bpb", "minimize"), ("recall/mqar", "maximize")]


def test_saved_view_is_an_experiment_tag_mlflow_reads_and_is_written_once(mlflow_uri):
    client = MlflowClient(mlflow_uri)
    exp = client.create_experiment("view-test")
    state = view_state([("val/bpb", "minimize")])
    assert save_view(client, exp, state) == "mirasweep"
    tag = client.get_experiment(exp).tags[SHARED_VIEW_TAG + "mirasweep"]
    view = json.loads(tag)
    assert isinstance(view["name"], str) and isinstance(view["createdAt"], int) and json.loads(view["state"]) == state
    save_view(client, exp, state)
    assert client.get_experiment(exp).tags[SHARED_VIEW_TAG + "mirasweep"] == tag  # unchanged: not rewritten
    save_view(client, exp, view_state([("recall/mqar", "maximize")]))
    again = json.loads(client.get_experiment(exp).tags[SHARED_VIEW_TAG + "mirasweep"])
    assert again["createdAt"] == view["createdAt"] and json.loads(again["state"])["orderByAsc"] is False
    assert runs_url("http://h:1/", exp, "mirasweep") == (
        f"http://h:1/#/experiments/{exp}/runs?workflowType=machine_learning&viewStateShareKey=mirasweep")


def test_confirmed_view_shows_each_objectives_mean_spread_and_interval_of_the_confirmed_runs_only(mlflow_uri):
    state = confirmed_view_state([("val/bpb", "minimize"), ("recall/mqar", "maximize")])
    assert state["selectedColumns"] == state["columnOrder"] == [
        "tags.`architecture`", "tags.`preset`", "metrics.`seeds`", "metrics.`val/bpb`", "metrics.`val/bpb/std`",
        "metrics.`val/bpb/ci95_low`", "metrics.`val/bpb/ci95_high`", "metrics.`recall/mqar`",
        "metrics.`recall/mqar/std`", "metrics.`recall/mqar/ci95_low`", "metrics.`recall/mqar/ci95_high`",
        "tags.`best`"]
    assert (state["orderByKey"], state["orderByAsc"]) == ("metrics.`val/bpb`", True)
    # the filter, run by a real store: the architecture runs alone, not the confirm run, seed runs or trials
    client = MlflowClient(mlflow_uri)
    exp = client.create_experiment("confirmed-view-test")
    kinds = {"trial": {"state": "COMPLETE", "stage": "search"}, "confirm": {"kind": "confirm", "stage": "confirm"},
             "architecture": {"kind": "confirmed", "stage": "confirm", "state": "CONFIRMED"},
             "seed": {"stage": "confirm", "seed": "1", "state": "COMPLETE"}}
    for name, tags in kinds.items():
        client.create_run(exp, run_name=name, tags=tags)
    assert [r.info.run_name for r in client.search_runs([exp], state["searchFilter"])] == ["architecture"]
    assert state["searchFilter"] == CONFIRMED_FILTER
