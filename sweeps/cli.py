"""The `mirasweep` command line."""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

from components.engine import AXES
from components.options import ComponentError

from .console import table_console


def _describe_all() -> dict:
    from components.layers.couplings import GATE_COUPLINGS

    out = {axis: {"what": reg.what, "components": reg.describe()} for axis, reg in AXES.items()}
    # not a MIRAS axis: the layer's choice of how the gates come from the token (memory.gate_coupling)
    out["gate_coupling"] = {"what": GATE_COUPLINGS.what + " (memory.gate_coupling)",
                            "components": GATE_COUPLINGS.describe()}
    return out


def _print_components(axes: dict) -> None:
    from rich.table import Table

    console = table_console()
    for axis, info in axes.items():
        table = Table(title=f"{axis} — {info['what']}", title_justify="left", show_lines=False)
        table.add_column("name", style="bold cyan", no_wrap=True)
        table.add_column("description")
        table.add_column("options (type, default, range)")
        for comp in info["components"]:
            opts = "\n".join(
                f"{o['name']}: {o['type']} = {o['default']!r} in {_range(o)} — {o['help']}" for o in comp["options"]
            ) or "—"
            table.add_row(comp["name"], comp["summary"], opts)
        console.print(table)
    console.print("Combine one per axis, e.g. structure=mlp bias=huber retention=decay algorithm=momentum (Yaad-like).")
    from components.models import list_presets

    console.print(f"Model presets (mirasweep components --model NAME): {', '.join(list_presets())}")


def _range(opt: dict) -> str:
    if "choices" in opt:
        return "{" + ", ".join(map(str, opt["choices"])) + "}"
    lo, hi = opt.get("low", "-inf"), opt.get("high", "inf")
    return f"[{lo}, {hi}]" + (" log" if opt.get("log") else "")


CARD_LENGTHS = (512, 2048)


def model_card(name: str, overrides: list[str]) -> dict:
    """Axes, options, sizes, parameters, state and FLOPs of a preset (or a preset with overrides)."""
    from components.models import build_model, preset_provenance, resolve_spec
    from components.models.accounting import cost

    import torch

    from .train.loop import memory_paths

    spec = resolve_spec(name, overrides)
    model = build_model(spec)
    costs = {L: cost(model, L) for L in CARD_LENGTHS}
    return {
        "preset": name, "provenance": preset_provenance(name), "architecture": spec.name, "hash": spec.content_hash,
        "spec": spec.to_dict(), "params": costs[CARD_LENGTHS[0]].params,
        "state": {str(L): c.state for L, c in costs.items()},
        "flops_per_token": {str(L): round(c.flops_per_token) for L, c in costs.items()},
        "engine_path": {device: memory_paths(model, torch.device(device)) for device in ("cpu", "cuda")},
        "fp32_check": fp32_check(name, overrides),
    }


def fp32_check(name: str, overrides: list[str]) -> dict:
    """Whether fp32 reproduces float64 for this architecture (resized to dim 64, 2 layers: the tests' setting) over
    2048 tokens, for each of three seeds of weights and data: a rule whose inner optimisation is chaotic is flagged
    here, not discovered in a training curve."""
    from components.models import build_model
    from components.models.numerics import DRIFT_SEEDS, DRIFT_TOKENS, FP32_BOUND, drift_verdict, worst_fp32_drift

    setting = (f"dim 64, 2 layers, 2 random sequences of {DRIFT_TOKENS} tokens, worst of seeds "
               f"{', '.join(map(str, DRIFT_SEEDS))}")
    try:
        drift = worst_fp32_drift(lambda: build_model(name, [*overrides, "dim=64", "layers=2"]))
    except ComponentError as err:
        return {"setting": setting, "verdict": f"not measured: {err}"}
    verdict = drift_verdict(drift)
    return {"setting": setting, "bound": FP32_BOUND, "drift": {str(k): v for k, v in drift.items()},
            "ok": not verdict, "verdict": verdict or f"fp32 within {FP32_BOUND:g} of float64"}


def _print_card(card: dict) -> None:
    from rich.table import Table

    spec = card["spec"]
    table = Table(title=f"{card['preset']}: {card['architecture']}  (hash {card['hash']})", title_justify="left",
                  show_header=False)
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    table.add_row("provenance", card["provenance"])
    table.add_row("backbone", ", ".join(f"{k}={v}" for k, v in spec["backbone"].items()))
    if spec["memory"]:
        for axis in ("structure", "bias", "retention", "algorithm"):
            table.add_row(axis, ", ".join(f"{k}={v}" for k, v in spec["memory"][axis].items()))
        layer = {k: v for k, v in spec["memory"].items() if k not in ("structure", "bias", "retention", "algorithm")}
        table.add_row("memory layer", ", ".join(f"{k}={v}" for k, v in layer.items()))
    table.add_row("sizes", f"dim={spec['dim']}, layers={spec['layers']}, vocab={spec['vocab_size']}")
    if spec["backbone"]["name"] != "memory":  # every other backbone has attention layers
        table.add_row("attention", ", ".join(f"{k}={v}" for k, v in spec["attention"].items()))
    table.add_row("parameters", f"{card['params']:,}")
    for L in CARD_LENGTHS:
        table.add_row(f"state @ {L} tokens", f"{card['state'][str(L)]:,} numbers per sequence")
    for L in CARD_LENGTHS:
        table.add_row(f"forward FLOPs/token @ {L}", f"{card['flops_per_token'][str(L)] / 1e6:,.2f} M")
    check = card["fp32_check"]
    flag = "" if check.get("ok", True) else "[bold red]FLAGGED[/bold red] "
    table.add_row("fp32 check", f"{flag}{check['verdict']} ({check['setting']})")
    paths = card["engine_path"]
    table.add_row("engine path", f"cpu: {paths['cpu']}, cuda: {paths['cuda']} (fp32/bf16)")
    table_console().print(table)


def _emit(data: dict, as_json: bool, printer) -> int:
    if as_json:
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        printer(data)
    return 0


def cmd_components(args: argparse.Namespace) -> int:
    if args.model:
        return _emit(model_card(args.model, args.set), args.json, _print_card)
    axes = _describe_all()
    if args.axis:
        if args.axis not in axes:
            raise ComponentError(f"--axis must be one of {', '.join(axes)}, got {args.axis!r}")
        axes = {args.axis: axes[args.axis]}
    return _emit(axes, args.json, _print_components)


def cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console

    from .train.compose import compose
    from .train.errors import TrainingStopped
    from .train.run import run_training

    from .train.distributed import environment_world

    config, choices = compose("train", args.overrides)
    preset = choices.get("model")
    task_name = (config.get("task") or {}).get("name", "lm")
    out_dir = Path(config.get("out_dir") or f"runs/train/{preset}-{task_name}-seed{config['train']['seed']}")
    world = environment_world()  # under torchrun or a multi-task SLURM step: data-parallel, rank 0 reports
    console = Console(stderr=True, quiet=not world.main)
    ranks = f" on {world.size} ranks" if world.distributed else ""
    console.print(f"[bold]mirasweep train[/bold] model={preset} task={task_name}{ranks} -> {out_dir}")
    try:
        result = run_training(config, out_dir, preset=preset)
    except TrainingStopped as err:
        console.print(f"[red]stopped:[/red] {err}")
        return err.exit_status
    if world.main:
        _print_metrics(result.metrics, config)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .sweep import run_sweep
    from .train.compose import compose

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config, choices = compose("sweep", args.overrides)
    if args.dry_run:
        return _dry_run(config, choices)
    console = Console(stderr=True)
    console.print(f"[bold]mirasweep sweep[/bold] search_space={choices.get('search_space')} "
                  f"launcher={(config.get('launcher') or {}).get('name')} trials={config['sweep']['n_trials']}")
    table, ctx = run_sweep(config, choices, detach=args.detach)
    if args.detach:
        where = ctx["launcher"].get("name")
        if where == "slurm":
            array = ctx["job_ids"][0].split("_")[0] if ctx["job_ids"] else "?"
            console.print(f"submitted SLURM array job {array} ({len(ctx['job_ids'])} tasks, logs in "
                          f"{ctx['sweep_dir']}/workers/)")
        else:
            console.print(f"{len(ctx.get('job_ids', []))} workers started")
        console.print(f"watch it: mirasweep status {ctx['sweep_dir']}\n"
                      f"results:  mirasweep report {ctx['sweep_dir']}\n"
                      "resume it (after a crash or scancel): the same sweep command again")
        return 0
    _print_report(table, ctx)
    _print_spread(ctx)
    if ctx.get("lost_workers"):
        console.print("[yellow]some workers ended before the sweep did:[/yellow]\n  " + "\n  ".join(ctx["lost_workers"]))
    if ctx.get("requeued"):
        console.print(f"trials {', '.join(map(str, ctx['requeued']))} lost their workers: failed and queued again")
    if ctx.get("interrupted"):
        console.print(f"[yellow]interrupted ({ctx['interrupted']})[/yellow]: running trials were checkpointed and "
                      f"queued again ({ctx['unfinished'] or 'count reached'}); resume: the same sweep command")
        return INTERRUPTED
    if ctx.get("unfinished"):
        console.print(f"[yellow]the sweep is not finished[/yellow] ({ctx['unfinished']}); "
                      "rerun the same command to finish it")
        return 1
    return 0


def _dry_run(config: dict, choices: dict) -> int:
    """Everything the real sweep validates (space, feasibility, sampler, pruner, launcher, storage, tracking, trial
    count), then the space's size and a few samples; creates nothing."""
    from .cost import sweep_cost
    from .launchers import trial_layout
    from .sweep import prepare

    space, ctx = prepare(config, choices)
    console = table_console()
    console.print(f"search space '{space.name}': {space.size()}")
    console.print(str(space.feasibility(seed=ctx["seed"])))  # measured once, by prepare's check
    for i, plan in enumerate(space.sample(3, seed=ctx["seed"])):
        reason = space.check(plan)
        console.print(f"sample {i}: {plan.params}" + (f"  -> rejected: {reason}" if reason else ""))
    launcher = ctx["launcher"]
    ranks, nodes, per_rank = trial_layout(launcher) if launcher.get("name") == "slurm" else (1, 1, 0)
    layout = (f", each trial on {ranks} data-parallel ranks{f' over {nodes} nodes' if nodes > 1 else ''}"
              f"{f' with {per_rank} GPU each' if per_rank else ''}" if ranks > 1 else "")
    console.print(f"would run {ctx['n_trials']} trials on launcher '{launcher.get('name')}' ({ctx['workers']} "
                  f"workers{layout}), study in {ctx['storage']}, runs in {ctx['tracking_uri']}")
    for line in sweep_cost(space, ctx["n_trials"], ctx["seed"], config.get("cost") or {}):
        console.print(line)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import optuna

    from .report import axis_summary, preset_rows, rows, spread, versus_presets, write_csv
    from .study import open_storage
    from .sweep import load_context

    ctx = load_context(args.sweep)
    study = optuna.load_study(study_name=ctx["study_name"], storage=open_storage(ctx["storage"]))
    metrics = list(json.loads(json.dumps(ctx["space"]))["objectives"])
    names = [m["metric"] for m in metrics]
    table = rows(study, names, top=args.top)
    if args.csv:
        write_csv(table, Path(args.csv))
    if args.json:
        print(json.dumps(_finite({
            "sweep": ctx["study_name"], "sweep_dir": str(ctx["sweep_dir"]), "objectives": metrics, "best": table,
            "covered": spread(study, names), "axes": axis_summary(study, names),
            "presets": preset_rows(study, names), "versus_presets": versus_presets(study, names, top=args.top),
            "confirmed": _confirmed_json(ctx),
            "plots": [str(p) for p in _write_plots(ctx, Path(args.plots))] if args.plots else []}), indent=1))
        return 0
    _print_report(table, ctx)
    _print_rows(spread(study, names), "what the search covered (completed trials)")
    _print_axes(axis_summary(study, names))
    # the known models that ran as seed points: did the sweep find anything better than them?
    _print_rows(preset_rows(study, names), "known models (presets) in this sweep")
    _print_rows(versus_presets(study, names, top=args.top), "best architectures against the best preset per objective")
    _report_confirmed(ctx)
    plots = _write_plots(ctx, Path(args.plots) if args.plots else Path(ctx["sweep_dir"]) / "plots")
    if plots:
        table_console().print(f"plots (PNG and interactive HTML): {plots[0].parent}/ "
                              f"({', '.join(sorted({p.stem for p in plots}))})")
    return 0


def _confirm_stage(ctx: dict):
    """(the sweep's confirm stage, its study), or None before `mirasweep confirm`."""
    import optuna

    from .confirm import load_stage
    from .study import open_storage

    stage = load_stage(ctx["sweep_dir"])
    if stage is None:
        return None
    return stage, optuna.load_study(study_name=stage["study_name"], storage=open_storage(stage["storage"]))


def _confirmed_json(ctx: dict) -> dict | None:
    from .confirm import estimates, summary_json

    confirm = _confirm_stage(ctx)
    return summary_json(confirm[0], estimates(*confirm)) if confirm else None


def _finite(value):
    """JSON has no NaN or infinity (strict parsers refuse them): a missing number is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _report_confirmed(ctx: dict) -> None:
    """A confirm stage's table (means, spreads, intervals) and its verdicts, where the sweep has one."""
    from .confirm import confirmed_rows, estimates, summary_markdown

    confirm = _confirm_stage(ctx)
    if confirm is None:
        return
    stage = confirm[0]
    found = estimates(*confirm)
    _print_rows(confirmed_rows(stage, found), f"confirmed architectures ({stage['confirm']['seeds']} seeds at "
                                              f"{stage['confirm']['budget_scale']:g}x the trial budget)")
    text = summary_markdown(stage, found)
    table_console().print(text[text.index("## Leaders"):].replace("## ", ""))


def _write_plots(ctx: dict, out: Path) -> list[Path]:
    """The report's plots as files: the Pareto front, the field's plots (recall vs state, bits per byte vs params
    and tokens/s) and, after a confirm stage, the confirmed intervals."""
    import optuna

    from .confirm import estimates
    from .plots import confirmed_intervals, field_plots, pareto_front
    from .study import open_storage

    out.mkdir(parents=True, exist_ok=True)
    study = optuna.load_study(study_name=ctx["study_name"], storage=open_storage(ctx["storage"]))
    names = [m["metric"] for m in ctx["space"]["objectives"]]
    files = pareto_front(study, names, out) + field_plots(study, out)
    confirm = _confirm_stage(ctx)
    if confirm:
        files += confirmed_intervals(estimates(*confirm), confirm[0]["space"]["objectives"], out)
    return files


def cmd_confirm(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .sweep import run_confirm

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    console = Console(stderr=True)
    console.print(f"[bold]mirasweep confirm[/bold] {args.sweep}: {args.seeds} seeds at {args.budget_scale:g}x the "
                  "trial budget")
    rows, stage = run_confirm(args.sweep, args.seeds, args.budget_scale, args.top, detach=args.detach)
    if args.detach:
        console.print(f"{len(stage.get('job_ids', []))} workers started; results: mirasweep report {args.sweep}")
        return 0
    _report_confirmed({"sweep_dir": stage["search"]["sweep_dir"]})
    console.print(f"table: {stage['sweep_dir']}/confirmed.csv; in the MLflow UI (mirasweep ui {args.sweep}): the "
                  "sweep's parent run, artifacts confirmed.md and plots/confirmed.png; filter tags.best = 'true'")
    if stage.get("interrupted"):
        console.print(f"[yellow]interrupted ({stage['interrupted']})[/yellow]: rerun the same command to resume")
        return INTERRUPTED
    if stage.get("unfinished"):
        console.print(f"[yellow]the confirm stage is not finished[/yellow] ({stage['unfinished']}); rerun the same "
                      "command to finish it")
        return 1
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """The MLflow UI on a sweep's store, on 127.0.0.1 unless --host says otherwise; runs until interrupted. The URL it
    prints opens the trials' runs table with the architecture, objective and cost columns (a saved view the command
    writes to the experiment: MLflow's URL cannot name columns)."""
    import subprocess

    from mlflow.tracking import MlflowClient

    from search_space import SearchSpace

    from .confirm import load_stage
    from .sweep import load_context
    from .tracking.mlflow_view import (CONFIRMED_VIEW_KEY, CONFIRMED_VIEW_NAME, confirmed_view_state,
                                       objective_metrics, runs_url, save_view, view_state)

    ctx = load_context(args.sweep)
    client = MlflowClient(ctx["tracking_uri"])
    exp = client.get_experiment_by_name(ctx["experiment"])
    base = url = f"http://{args.host}:{args.port}/"
    if exp:
        space = SearchSpace.from_dict(ctx["space"], name=ctx["space_name"])
        key = save_view(client, exp.experiment_id, view_state(objective_metrics(space)))
        url = runs_url(base, exp.experiment_id, key)
    print(f"MLflow UI for sweep '{ctx['study_name']}': {url}", flush=True)
    if exp and load_stage(ctx["sweep_dir"]) is not None:
        objectives = [(o["metric"], o["direction"]) for o in ctx["space"]["objectives"]]
        key = save_view(client, exp.experiment_id, confirmed_view_state(objectives), CONFIRMED_VIEW_KEY,
                        CONFIRMED_VIEW_NAME)
        print(f"confirmed architectures (mirasweep confirm): {runs_url(base, exp.experiment_id, key)}", flush=True)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", ctx["tracking_uri"],
           "--host", args.host, "--port", str(args.port)]
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0


def _print_spread(ctx: dict) -> None:
    """What the search covered (best, median, worst per objective) and the known models it ran."""
    import optuna

    from .report import preset_rows, spread
    from .study import open_storage

    study = optuna.load_study(study_name=ctx["study_name"], storage=open_storage(ctx["storage"]))
    names = [m["metric"] for m in ctx["space"]["objectives"]]
    _print_rows(spread(study, names), "what the search covered (completed trials)")
    _print_rows(preset_rows(study, names), "known models (presets) in this sweep")


def _print_axes(summary: list[dict]) -> None:
    _print_rows(summary, "per-axis summary: which choices win (completed trials)")


def _print_rows(table: list[dict], title: str) -> None:
    from rich.table import Table

    if not table:
        return
    out = Table(title=title, title_justify="left")
    for key in table[0]:
        out.add_column(key, no_wrap=key in ("axis", "choice", "preset", "architecture"))
    for row in table:
        out.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()))
    table_console().print(out)


def _print_report(table: list[dict], ctx: dict) -> None:
    from rich.table import Table

    console = table_console()
    title = "best architectures (Pareto set)" if len(ctx["space"]["objectives"]) > 1 else "best architectures"
    out = Table(title=f"{title} — sweep {ctx['study_name']}", title_justify="left")
    shown = [k for k in (table[0] if table else {"trial": 0}) if k not in ("mlflow_run_id", "preset")]
    for key in shown:
        out.add_column(key, no_wrap=key == "architecture")
    for row in table:
        name = row["architecture"] + (f" ({row['preset']})" if row.get("preset") else "")
        out.add_row(*(name if k == "architecture" else f"{row[k]:.4g}" if isinstance(row[k], float) else str(row[k])
                      for k in shown))
    console.print(out if table else "no completed trials yet")
    console.print(f"CSV: {Path(ctx['sweep_dir']) / 'report.csv'}")
    console.print(f"Browse them in the MLflow UI: mirasweep ui {ctx['sweep_dir']}  (experiment '{ctx['experiment']}')")


def _print_metrics(metrics: dict, config: dict) -> None:
    from rich.table import Table

    from .tracking import default_uri

    table = Table(title="final metrics", title_justify="left")
    table.add_column("metric", style="bold cyan")
    table.add_column("value", justify="right")
    for key in sorted(metrics):
        value = metrics[key]
        table.add_row(key, f"{value:,.4g}" if isinstance(value, float) else f"{value:,}")
    console = table_console()
    console.print(table)
    uri = (config.get("tracking") or {}).get("uri") or default_uri()
    console.print(f"Browse it: mlflow ui --backend-store-uri {uri} --host 127.0.0.1  (then open http://127.0.0.1:5000)")


def cmd_status(args: argparse.Namespace) -> int:
    from .status import collect, render
    from .sweep import load_context

    from .confirm import load_stage

    info = collect(load_context(args.sweep))
    stage = load_stage(args.sweep)  # the confirm stage's trials (one per architecture and seed), where it has one
    if stage:
        info["confirm"] = collect(stage)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        render(info)
        if stage:
            render(info["confirm"])
    return 0


def cmd_space(args: argparse.Namespace) -> int:
    from .space_files import new_space, spaces

    if args.action == "new":
        path = new_space(args.name, args.source, Path(args.config_dir[0]) if args.config_dir else None)
        print(f"wrote {path}\n  check it: mirasweep sweep search_space={args.name} --dry-run\n"
              f"  run it:   mirasweep sweep search_space={args.name}"
              + ("" if path.parent.parent.resolve() == (Path.cwd() / "conf").resolve()
                 else f" --config-dir {path.parent.parent}"))
        return 0
    for name, path in spaces():
        print(f"{name:20s} {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mirasweep", description=__doc__.strip() + " — search the MIRAS design space.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config-dir", action="append", metavar="DIR",
                        help="a folder of your own configs (search_space/, model/, task/, ...) searched before ./conf "
                             "and the shipped ones; may be repeated")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser = sub.add_parser
    sub.add_parser = lambda *a, **kw: add_parser(*a, parents=[common], **kw)  # --config-dir on every command
    comp = sub.add_parser("components", help="list every registered component per MIRAS axis with its options")
    comp.add_argument("--json", action="store_true", help="machine-readable output")
    comp.add_argument("--axis", help=f"only one axis: {', '.join(AXES)}")
    comp.add_argument("--model", metavar="PRESET", help="print the model card of a preset (axes, options, size, state, FLOPs)")
    comp.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                      help="override a spec value for --model, e.g. --set dim=256 --set memory.structure.depth=3")
    comp.set_defaults(func=cmd_components)
    train = sub.add_parser("train", help="train one architecture on one task and track it in MLflow",
                           description="Train one architecture (a preset or a spec with overrides) on one task. "
                           "Arguments are Hydra overrides of conf/train.yaml, e.g. model=gated_deltanet task=mqar "
                           "model.dim=64 train.steps=300. Rerun with the same out_dir to resume.")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Hydra overrides of conf/train.yaml")
    train.set_defaults(func=cmd_train)
    sweep = sub.add_parser("sweep", help="search the MIRAS space with Optuna (local workers, SLURM, or in-process)",
                           description="Run an architecture search. Arguments are Hydra overrides of conf/sweep.yaml, "
                           "e.g. search_space=quick launcher=local launcher.workers=2 sweep.n_trials=8. The same "
                           "command resumes an interrupted sweep; a finished one is only reported.")
    sweep.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Hydra overrides of conf/sweep.yaml")
    sweep.add_argument("--dry-run", action="store_true", help="print the space's size and a few samples; train nothing")
    sweep.add_argument("--detach", action="store_true", help="start the workers and return")
    sweep.set_defaults(func=cmd_sweep)
    report = sub.add_parser("report", help="the best architectures of a sweep (Pareto set) as a table and CSV")
    report.add_argument("sweep", help="the sweep directory (runs/sweeps/<name>)")
    report.add_argument("--top", type=int, default=10, help="rows for a single-objective sweep")
    report.add_argument("--csv", help="also write the table to this CSV file")
    report.add_argument("--plots", help="folder for the plots (default: <sweep>/plots)")
    report.add_argument("--json", action="store_true",
                        help="print one JSON object (best, presets, per-axis summary, confirmed) instead of tables; "
                             "writes plots only with --plots")
    report.set_defaults(func=cmd_report)
    confirm = sub.add_parser("confirm", help="retrain a sweep's best architectures and presets with more seeds; "
                                             "say which leads are beyond noise")
    confirm.add_argument("sweep", help="the sweep directory (runs/sweeps/<name>)")
    confirm.add_argument("--seeds", type=int, default=3, help="fresh training seeds per architecture (default 3)")
    confirm.add_argument("--budget-scale", type=float, default=1.0, help="times the trial budget (steps; default 1)")
    confirm.add_argument("--top", type=int, default=5, help="architectures of a single-objective sweep (default 5; "
                                                            "a multi-objective sweep confirms its Pareto set)")
    confirm.add_argument("--detach", action="store_true", help="start the workers and return")
    confirm.set_defaults(func=cmd_confirm)
    status = sub.add_parser("status", help="a sweep's trials by state, its SLURM jobs (sacct) and what is failing")
    status.add_argument("sweep", help="the sweep directory (runs/sweeps/<name>)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    ui = sub.add_parser("ui", help="open a sweep's runs in the MLflow UI (serves on 127.0.0.1)")
    ui.add_argument("sweep", help="the sweep directory (runs/sweeps/<name>)")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--host", default="127.0.0.1", help="interface to bind; 0.0.0.0 exposes it to the network")
    ui.set_defaults(func=cmd_ui)
    space = sub.add_parser("space", help="start a search space of your own (space new NAME) or list the spaces")
    space.add_argument("action", choices=("new", "list"))
    space.add_argument("name", nargs="?", help="the new space's name (space new)")
    space.add_argument("--from", dest="source", default="quick", metavar="SPACE",
                       help="the space to start from (default: quick)")
    space.set_defaults(func=cmd_space)
    return parser


INTERRUPTED = 3  # stopped by SIGINT/SIGTERM after checkpointing (as `mirasweep train`); the same command resumes


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in rest):
        args.overrides += rest  # overrides after a flag (`sweep --dry-run sweep.n_trials=4`) are overrides too
    elif rest:
        parser.parse_args(argv)  # argparse's own message and exit status 2
    # MLflow announces every new SQLite store ("Creating initial MLflow database tables..."): noise for a user
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    if args.command == "space" and args.action == "new" and not args.name:
        parser.error("space new needs a NAME, e.g. mirasweep space new my_space")
    try:
        if args.config_dir:
            from components.conf import use_config_dirs

            use_config_dirs(args.config_dir)
        return args.func(args)
    except ComponentError as err:
        print(f"mirasweep: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside the phases that checkpoint: one line, no traceback
        print("mirasweep: interrupted; nothing is lost: the same command resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
