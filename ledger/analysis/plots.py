"""`ledger plot`: the log's scores as a picture, and the epoch curves of reproductions.

matplotlib is imported inside the functions (headless Agg backend): the other ledger
commands never load it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from sqlalchemy.orm import Session

from ledger.core.errors import LedgerError
from ledger.store.sql_reader import get_run

# Job fields whose change is named in a point's label, in this order of importance.
_SHORT = {
    "backbone": "backbone", "criterion1": "loss", "criterion2": "loss2", "multi_loss": "multi loss",
    "focal_gamma": "gamma", "t_max": "T_max", "scheduler_step": "sched step", "cutmix": "cutmix",
    "hflip_p": "flip", "rotate_p": "rotate", "brightness_contrast_p": "bright/contrast", "cutout_p": "cutout",
    "clahe_p": "CLAHE", "histogram_equalization": "hist-eq", "input_scale": "input", "lr": "lr",
    "weight_decay": "wd", "num_epochs": "epochs", "batch_size": "batch",
}


def change_label(entry: Any, limit: int = 3) -> str:
    """A few words saying what a run changed from the previous one."""
    if entry.kind == "ensemble":
        return "ensemble of runs"
    if entry.job_error:
        if entry.argument_changes:  # another code family's rows: what its arguments say changed
            parts = [f"{c['key']} {_fmt(c['before'])}→{_fmt(c['after'])}" for c in entry.argument_changes]
            more = [f"(+{len(parts) - limit} more)"] if len(parts) > limit else []
            return "\n".join(parts[:limit] + more)
        return "first run" if entry.previous is None else "no training job"
    if entry.previous is None:
        return "first run"
    parts = []
    changed = {c["field"]: c for c in entry.job_changes}
    for field, short in _SHORT.items():
        if field in changed:
            c = changed[field]
            parts.append(f"{short} {_fmt(c['before'])}→{_fmt(c['after'])}")
    if not parts:
        return "no job change"
    more = [f"(+{len(parts) - limit} more)"] if len(parts) > limit else []
    return "\n".join(parts[:limit] + more)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and value.startswith("tf_efficientnet_"):
        return value.removeprefix("tf_efficientnet_")
    return str(value)


def plot_scores(session: Session, output: Path, metric: Optional[str] = None) -> dict[str, Any]:
    """A score of every logged run, in log order, each labelled by its change: the LB mIoU,
    or `metric`, one of the log's score columns (`miou_latest`)."""
    from ledger.analysis.history import history

    entries = [e for e in history(session) if e.kind != "reproduction"]
    if metric in (None, "lb_miou", "lb"):
        metric, label = None, "LB mIoU"
        value_of = lambda e: e.lb_miou  # noqa: E731
    else:
        known = list(dict.fromkeys(m for e in entries for m in e.scores or {}))
        if metric not in known:
            have = f"the log's score columns are: {', '.join(known)}" if known else "the log has no score columns"
            raise LedgerError(f"--metric {metric!r}: no run has it; {have} (or lb_miou)")
        label = metric
        value_of = lambda e: (e.scores or {}).get(metric)  # noqa: E731
    points = [(i, e, value_of(e)) for i, e in enumerate(entries) if value_of(e) is not None]
    if not points:
        if metric:
            raise LedgerError(f"no run has a number for {metric} to plot")
        raise LedgerError("no run in the ledger has an LB score to plot; record one with `ledger set RUN --lb X`")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(8.0, 1.5 * len(entries)), 6.5), constrained_layout=True)
    xs = [i for i, _, _ in points]
    ys = [v for _, _, v in points]
    ax.plot(xs, ys, "-", color="#9db4d6", zorder=1)
    colors = ["#c0392b" if e.confounded else "#1f5fa8" for _, e, _ in points]
    ax.scatter(xs, ys, c=colors, s=60, zorder=2)
    span = (max(ys) - min(ys)) or 0.05
    for n, (i, e, v) in enumerate(points):
        text = f"{v:.4f}\n{change_label(e)}"
        offset = 28 if n % 2 == 0 else -70
        ax.annotate(text, (i, v), textcoords="offset points", xytext=(0, offset), ha="center",
                    fontsize=8, va="bottom" if offset > 0 else "top",
                    arrowprops=dict(arrowstyle="-", color="#999999", lw=0.6))
    ax.set_ylim(min(ys) - 0.9 * span, max(ys) + 0.9 * span)
    ax.set_xlim(-0.6, len(entries) - 0.4)
    ax.set_xticks(range(len(entries)))
    ax.set_xticklabels([e.name for e in entries], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(label)
    what = "Leaderboard score" if metric is None else metric
    ax.set_title(f"{what} over the log (red: several things changed at once)")
    ax.grid(axis="y", alpha=0.3)
    _save(fig, output)
    key = metric or "lb_miou"
    return {"output": str(output), "metric": key, "points": [{"run": e.name, key: v} for _, e, v in points]}


def _short_name(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def plot_curves(session: Session, names: list[str], output: Path) -> dict[str, Any]:
    """Per-epoch val mIoU and losses of runs that have metric series.

    The epoch whose weights each run kept (`best.pt`, by its job's rule) is ringed on the
    val mIoU panel; the loss panel is drawn on a log scale when one epoch's loss dwarfs the
    rest (a diverging first epoch would otherwise flatten every other point).
    """
    from reproduce.job import checkpoint_epoch

    runs = [get_run(session, name) for name in names]
    series: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for run in runs:
        for metric in run.metrics:
            series.setdefault(run.name, {}).setdefault(metric.name, []).append((metric.step, metric.value))
    missing = [run.name for run in runs if run.name not in series]
    if missing:
        raise LedgerError(f"no per-epoch metrics for {', '.join(missing)}: only reproductions and runs started "
                          "with `ledger run` have them")
    checkpoints: dict[str, Optional[int]] = {}
    for run in runs:
        rule = ((run.job or {}).get("job") or {}).get("checkpoint_metric")
        checkpoints[run.name] = checkpoint_epoch(rule, series[run.name].get(rule, [])) if rule else None
    losses = [v for metrics in series.values() for key in LOSSES for _, v in metrics.get(key, [])]
    log_losses = dwarfed(losses)

    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    for name, metrics in series.items():
        for key, ax, style in (("val_miou", left, "-o"), ("lb_val_miou", left, "--"), ("train_loss", right, "-o"),
                               ("val_loss", right, "--s")):
            points = sorted(metrics.get(key, []))
            if points:
                line, = ax.plot([p[0] for p in points], [p[1] for p in points], style, markersize=4,
                                label=f"{_short_name(name, 40)} {key}")
                kept = checkpoints[name]
                if key == "val_miou" and kept is not None:
                    value = dict(points).get(kept)
                    if value is not None:
                        ax.plot([kept], [value], "o", markersize=11, markerfacecolor="none",
                                markeredgecolor=line.get_color(), markeredgewidth=1.6)
    left.set_title("val mIoU (solid), LB-style (dashed); ringed: the checkpoint kept")
    right.set_title("train loss (solid) and val loss (dashed)" + (", log scale" if log_losses else ""))
    if log_losses:
        right.set_yscale("log")
    from matplotlib.ticker import MaxNLocator

    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _save(fig, output)
    return {"output": str(output), "runs": list(series), "checkpoint_epochs": checkpoints,
            "loss_scale": "log" if log_losses else "linear"}


LOSSES = ("train_loss", "val_loss")


def dwarfed(values: list[float], factor: float = 10.0) -> bool:
    """Whether the largest of these positive values is more than `factor` times their median."""
    positive = sorted(v for v in values if v > 0)
    if len(positive) < 3:
        return False
    median = positive[len(positive) // 2]
    return positive[-1] > factor * median


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, output: Path) -> None:
    import matplotlib.pyplot as plt

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp.png")
    try:
        fig.savefig(tmp, dpi=120)
        tmp.replace(output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LedgerError(f"cannot write {output}: {exc.strerror}") from None
    finally:
        plt.close(fig)
