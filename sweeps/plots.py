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


def log_plots(study: optuna.Study, metrics: list[str], tracker) -> list[str]:
    """Draw every plot into a temporary folder and log it under `plots/` of the tracker's run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        files = pareto_front(study, metrics, out) + optuna_plots(study, metrics, out)
        for f in files:
            tracker.client.log_artifact(tracker.run_id, str(f), artifact_path="plots")
        return [os.path.basename(f) for f in files]
