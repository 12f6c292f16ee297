"""Plots of a sweep for its MLflow parent run: the Pareto front labelled by architecture, Optuna's parameter
importances and optimisation history per objective; each as a PNG (shown inline by the MLflow UI) and as
interactive HTML (plotly)."""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState


def _complete(study: optuna.Study):
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def pareto_front(study: optuna.Study, metrics: list[str], out: Path) -> list[Path]:
    """Every completed trial on the first two objectives; the Pareto set highlighted and named."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    trials = _complete(study)
    if len(metrics) < 2 or not trials:
        return []
    best = {t.number for t in study.best_trials}
    name = lambda t: t.user_attrs.get("architecture", f"trial {t.number}")  # noqa: E731
    fig, ax = plt.subplots(figsize=(8, 6))
    for group, style in ((False, dict(c="0.7", s=25)), (True, dict(c="tab:red", s=45))):
        pts = [t for t in trials if (t.number in best) == group]
        ax.scatter([t.values[0] for t in pts], [t.values[1] for t in pts], label="Pareto set" if group else "trials",
                   **style)
        for t in pts if group else ():
            ax.annotate(f"{name(t)} (#{t.number})", (t.values[0], t.values[1]), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(f"{metrics[0]} ({study.directions[0].name.lower()})")
    ax.set_ylabel(f"{metrics[1]} ({study.directions[1].name.lower()})")
    ax.set_title(f"Pareto front of sweep '{study.study_name}' ({len(trials)} completed trials)")
    ax.legend()
    fig.tight_layout()
    png = out / "pareto_front.png"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    plot = go.Figure()
    for group in (False, True):
        pts = [t for t in trials if (t.number in best) == group]
        plot.add_scatter(x=[t.values[0] for t in pts], y=[t.values[1] for t in pts],
                         mode="markers+text" if group else "markers", text=[name(t) for t in pts],
                         textposition="top center", name="Pareto set" if group else "trials",
                         hovertext=[f"#{t.number} {name(t)}" for t in pts])
    plot.update_layout(title=f"Pareto front of sweep '{study.study_name}'", xaxis_title=metrics[0], yaxis_title=metrics[1])
    html = out / "pareto_front.html"
    plot.write_html(html, include_plotlyjs=True)  # self-contained: opens offline (the other plots load plotly.js from its CDN)
    return [png, html]


def optuna_plots(study: optuna.Study, metrics: list[str], out: Path) -> list[Path]:
    """Parameter importances (fANOVA) and optimisation history for each objective."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna import visualization as vis
    from optuna.visualization import matplotlib as vis_mpl

    written = []
    if len(_complete(study)) < 2:
        return written
    for i, metric in enumerate(metrics):
        target = (lambda t, i=i: t.values[i]) if len(metrics) > 1 else None
        # Optuna's default importance evaluator explains low values: flip a maximised objective for it
        sign = -1.0 if study.directions[i] == optuna.study.StudyDirection.MAXIMIZE else 1.0
        lowered = (lambda t, i=i: sign * t.values[i]) if (len(metrics) > 1 or sign < 0) else None
        slug = metric.replace("/", "_").replace("@", "_at_")
        for kind, plotly_fn, mpl_fn, tgt in (
            ("importance", vis.plot_param_importances, vis_mpl.plot_param_importances, lowered),
            ("history", vis.plot_optimization_history, vis_mpl.plot_optimization_history, target),
        ):
            try:
                with warnings.catch_warnings():  # small sweeps: "some regimes have less than 2 trials"
                    warnings.simplefilter("ignore")
                    plotly_fn(study, target=tgt, target_name=metric).write_html(out / f"{kind}_{slug}.html",
                                                                                 include_plotlyjs="cdn")
                    ax = mpl_fn(study, target=tgt, target_name=metric)
                ax.figure.savefig(out / f"{kind}_{slug}.png", dpi=110, bbox_inches="tight")
                plt.close(ax.figure)
                written += [out / f"{kind}_{slug}.html", out / f"{kind}_{slug}.png"]
            except (ValueError, RuntimeError) as err:  # e.g. importances need two distinct parameter values
                (out / f"{kind}_{slug}.txt").write_text(f"not drawn: {err}\n")
                written.append(out / f"{kind}_{slug}.txt")
    return written


def _save(fig, plot, out: Path, stem: str) -> list[Path]:
    """A matplotlib figure as PNG (the MLflow UI shows it inline) and its plotly twin as self-contained HTML."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(out / f"{stem}.png", dpi=120)
    plt.close(fig)
    plot.write_html(out / f"{stem}.html", include_plotlyjs=True)
    return [out / f"{stem}.png", out / f"{stem}.html"]


def confirmed_intervals(found: dict, objectives: list[dict], out: Path) -> list[Path]:
    """The confirmed architectures' means with their 95% intervals as error bars: on the first two objectives
    against each other (a Pareto front with error bars), or one objective per architecture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    names = [n for n in found if found[n][0].n]
    if not names:
        return []
    err = lambda e: e.half_width if e.n > 1 else 0.0  # noqa: E731  (one seed: a bare point, said in the legend)
    metrics = [o["metric"] for o in objectives]
    fig, ax = plt.subplots(figsize=(8, 6))
    plot = go.Figure()
    if len(metrics) >= 2:
        for n in names:
            a, b = found[n][0], found[n][1]
            ax.errorbar(a.mean, b.mean, xerr=err(a), yerr=err(b), fmt="o", capsize=3, label=f"{n} ({a.n} seeds)")
            ax.annotate(n, (a.mean, b.mean), fontsize=7, xytext=(4, 4), textcoords="offset points")
            plot.add_scatter(x=[a.mean], y=[b.mean], mode="markers+text", text=[n], textposition="top center", name=n,
                             error_x=dict(type="data", array=[err(a)]), error_y=dict(type="data", array=[err(b)]))
        ax.set_xlabel(f"{metrics[0]} ({objectives[0]['direction']})")
        ax.set_ylabel(f"{metrics[1]} ({objectives[1]['direction']})")
        plot.update_layout(xaxis_title=metrics[0], yaxis_title=metrics[1])
    else:
        means, bars = [found[n][0].mean for n in names], [err(found[n][0]) for n in names]
        ax.errorbar(range(len(names)), means, yerr=bars, fmt="o", capsize=3)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(f"{metrics[0]} ({objectives[0]['direction']})")
        plot.add_scatter(x=names, y=means, mode="markers", error_y=dict(type="data", array=bars), name=metrics[0])
        plot.update_layout(yaxis_title=metrics[0])
    title = "Confirmed architectures: mean and 95% interval over seeds"
    ax.set_title(title)
    if len(metrics) >= 2:
        ax.legend(fontsize=7)
    plot.update_layout(title=title)
    return _save(fig, plot, out, "confirmed")


def _metric(t, key: str, task: str | None = None):
    """A completed trial's metric, the task's own copy first (lm and mqar both report some names)."""
    attrs = t.user_attrs
    return attrs.get(f"metric:{task}:{key}", attrs.get(f"metric:{key}")) if task else attrs.get(f"metric:{key}")


def recall_frontier(study: optuna.Study, out: Path) -> list[Path]:
    """Zoology's plot: MQAR recall against the recurrent state a sequence needs (numbers kept per sequence; log
    scale), one point per architecture and setting: the trained one and each step of the difficulty ladder, with the
    state at that setting's length (attention's cache grows with it, a recurrent state does not). Presets named."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    trials = [t for t in _complete(study) if _metric(t, "recall/mqar", "mqar") is not None]
    if not trials:
        return []
    settings = [("recall/mqar", "cost/state", "trained setting")]
    ladder = sorted({k.split("@", 1)[1] for t in trials for k in t.user_attrs
                     if k.startswith("metric:mqar:recall/mqar@")}, key=lambda s: [int(x) for x in s.split("x")])
    settings += [(f"recall/mqar@{s}", f"cost/state@{s}", f"ladder {s.replace('x', ' tokens x ')} pairs")
                 for s in ladder]
    fig, ax = plt.subplots(figsize=(8, 6))
    plot = go.Figure()
    for recall, state, name in settings:
        pts = [(t, _metric(t, state, "mqar"), _metric(t, recall, "mqar")) for t in trials]
        pts = [(t, x, y) for t, x, y in pts if x and y is not None]
        if not pts:
            continue
        ax.scatter([x for _, x, _ in pts], [y for _, _, y in pts], label=name, s=30)
        for t, x, y in pts:
            if t.user_attrs.get("preset"):
                ax.annotate(t.user_attrs["preset"], (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
        plot.add_scatter(x=[x for _, x, _ in pts], y=[y for _, _, y in pts], mode="markers+text", name=name,
                         text=[t.user_attrs.get("preset", "") for t, _, _ in pts], textposition="top center",
                         hovertext=[f"#{t.number} {t.user_attrs.get('architecture', '?')}" for t, _, _ in pts])
    ax.set_xscale("log")
    ax.set_xlabel("recurrent state per sequence (numbers, log scale)")
    ax.set_ylabel("MQAR recall")
    title = f"Recall vs state (Zoology's frontier), sweep '{study.study_name}'"
    ax.set_title(title)
    ax.legend(fontsize=7)
    plot.update_layout(title=title, xaxis_type="log", xaxis_title="recurrent state per sequence (numbers)",
                       yaxis_title="MQAR recall")
    return _save(fig, plot, out, "recall_vs_state")


def bpb_scatter(study: optuna.Study, out: Path) -> list[Path]:
    """Bits per byte against parameters and against training tokens/s (the LM task's own), presets named."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    written = []
    trials = [t for t in _complete(study) if _metric(t, "val/bpb", "lm") is not None]
    for key, axis, stem in (("cost/params", "parameters", "bpb_vs_params"),
                            ("perf/tokens_per_s", "training tokens/s", "bpb_vs_tokens_per_s")):
        pts = [(t, _metric(t, key, "lm"), _metric(t, "val/bpb", "lm")) for t in trials]
        pts = [(t, x, y) for t, x, y in pts if x]
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(8, 6))
        ax.scatter([x for _, x, _ in pts], [y for _, _, y in pts], s=30)
        for t, x, y in pts:
            if t.user_attrs.get("preset"):
                ax.annotate(t.user_attrs["preset"], (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(f"{axis} (log scale)")
        ax.set_ylabel("val/bpb (bits per byte)")
        title = f"Bits per byte vs {axis}, sweep '{study.study_name}'"
        ax.set_title(title)
        plot = go.Figure()
        plot.add_scatter(x=[x for _, x, _ in pts], y=[y for _, _, y in pts], mode="markers+text",
                         text=[t.user_attrs.get("preset", "") for t, _, _ in pts], textposition="top center",
                         hovertext=[f"#{t.number} {t.user_attrs.get('architecture', '?')}" for t, _, _ in pts])
        plot.update_layout(title=title, xaxis_type="log", xaxis_title=axis, yaxis_title="val/bpb")
        written += _save(fig, plot, out, stem)
    return written


def field_plots(study: optuna.Study, out: Path) -> list[Path]:
    """The plots this field reads, where the sweep has their data."""
    return recall_frontier(study, out) + bpb_scatter(study, out)


def log_plots(study: optuna.Study, metrics: list[str], tracker) -> list[str]:
    """Draw every plot into a temporary folder and log it under `plots/` of the tracker's run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        files = pareto_front(study, metrics, out) + optuna_plots(study, metrics, out) + field_plots(study, out)
        for f in files:
            tracker.client.log_artifact(tracker.run_id, str(f), artifact_path="plots")
        return [os.path.basename(f) for f in files]
