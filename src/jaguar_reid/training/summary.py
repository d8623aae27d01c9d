"""What ``train`` prints at the end: the kept epoch and its validation metrics against the untrained model."""

from __future__ import annotations

from pathlib import Path

from ..evaluation.metrics import OTHER_GROUPS, metric_label

LEADERBOARD = "identity_balanced_map"


def honest_key(summary: dict) -> str:
    """The leaderboard metric on other groups' pairs when the run has groups, else on all pairs."""
    return LEADERBOARD + OTHER_GROUPS if LEADERBOARD + OTHER_GROUPS in summary["best"] else LEADERBOARD


def _table(columns: dict[str, dict]) -> list[str]:
    keys = list(next(iter(columns.values())))
    width = max(len(metric_label(k)) for k in keys) + 2
    lines = [f"  {'validation, raw similarity':{width}}" + "".join(f"{name:>12}" for name in columns)]
    for key in keys:
        lines.append(f"  {metric_label(key):{width}}" + "".join(f"{values[key]:>12.4f}" for values in columns.values()))
    return lines


def format_summary(summary: dict, out: str | Path) -> str:
    """A short labelled summary of a finished run (single or multi-seed), with a warning when
    training did not beat the frozen pretrained features."""
    lines = []
    if "seeds" in summary:
        lines.append(f"{len(summary['seeds'])} seeds ({', '.join(map(str, summary['seeds']))}); mean and standard deviation of the kept epochs:")
        lines += _table({"mean": summary["mean"], "std": summary["std"]})
        runs = list(summary["runs"].values())
    else:
        runs = [summary]
        lines.append(f"kept epoch {summary['best_epoch']} of {summary['epochs']} (selected by {metric_label(summary['selection_metric'])}; "
                     f"epoch 0 is the untrained model); {summary['n_train_images']} training and {summary['n_val_images']} "
                     f"validation images, {summary['train_seconds'] / 60:.1f} min of training")
        lines += _table({"untrained": summary["untrained"], "kept epoch": summary["best"]})
    for run in runs:
        if "choice" in run:
            lines.append(f"{'seed ' + str(run['seed']) + ': ' if len(runs) > 1 else ''}kept the {run['stage']} stage: {run['choice']}")
    for run in runs:
        key = honest_key(run)
        if run["epochs"] > 0 and run["best"][key] <= run["untrained"][key]:
            lines.append(f"warning: seed {run['seed']}: training did not beat the frozen pretrained features on "
                         f"{metric_label(key)} ({run['best'][key]:.4f} vs {run['untrained'][key]:.4f} untrained); "
                         "the kept model is the better of the two (epoch 0 is a candidate)")
    lines.append(f"run folder: {out}   next: jaguar-reid evaluate {out}")
    return "\n".join(lines)
