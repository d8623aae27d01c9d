"""Score embeddings of a labelled image set: every step of the post-processing chain (pure, on arrays).

``evaluate_embeddings`` turns embeddings into an ``Evaluation`` (the ablation rows and what a
report shows); ``jaguar_reid.tasks.evaluate_embedder`` and ``evaluate_run`` embed a run's images
and call it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import PostprocessConfig
from ..postprocess import (
    chain_until,
    cosine_similarity,
    every_box,
    postprocess_similarity,
    postprocess_steps,
)
from .metrics import METRIC_NAMES, compute_metrics, metric_label

SUBMISSION_STEP = "submission (the configured chain)"


@dataclass
class Evaluation:
    """Metrics of each step of the chain on one image set, and the data behind the final step."""

    set_name: str
    paths: list[Path]
    labels: np.ndarray
    rows: list[tuple[str, dict]]
    submission_step: str  # the row whose similarity a submission would hold
    embeddings: np.ndarray  # the chain's input (flip TTA applied when configured)
    similarity: np.ndarray  # the configured chain's final similarity
    alpha: str = "keep"  # how the images were shown to the model (for thumbnails)
    background: dict[str, dict] | None = None  # background_diagnostic's result, for cut-outs

    def metrics(self, step: str) -> dict:
        """The metrics of one step of the chain."""
        return dict(self.rows)[step]

    @property
    def chain_rows(self) -> list[tuple[str, dict]]:
        """The ablation's steps only (no baseline or submission row), "raw" named as in the chain."""
        return [("raw" if name == "trained, raw" else name, m) for name, m in self.rows
                if name not in ("frozen pretrained features", SUBMISSION_STEP)]

    def best_step(self, metric: str = "identity_balanced_map") -> str:
        """The step of the chain that scored best here (the earliest of equals: fewer boxes)."""
        rows = self.chain_rows
        best = max(m[metric] for _, m in rows)
        return next(name for name, m in rows if m[metric] == best)

    def advice(self, postprocess: PostprocessConfig, metric: str = "identity_balanced_map") -> list[str]:
        """What each box did here, and the best validated chain as settings a user can pass."""
        rows = self.chain_rows
        effects = [f"{name} {m[metric] - previous[metric]:+.4f}" for (name, m), (_, previous) in zip(rows[1:], rows)]
        lines = ["what each box did here (identity-balanced mAP): " + ", ".join(effects)]
        best = self.best_step(metric)
        configured = self.metrics(self.submission_step)[metric]
        if self.metrics(best)[metric] > configured:
            chosen = chain_until(postprocess, best)
            flags = " ".join(f"--set postprocess.{key}={str(getattr(chosen, key)).lower()}"
                             for key in ("flip_tta", "query_expansion", "rerank", "blend")
                             if getattr(chosen, key) != getattr(postprocess, key))
            lines.append(f"the chain up to '{best}' scores {self.metrics(best)[metric]:.4f} here, the configured chain "
                         f"{configured:.4f}: to use it, predict with {flags} (or --set postprocess.auto=true)")
        else:
            lines.append(f"the configured chain is the best validated one here ({configured:.4f})")
        return lines

    def to_json(self) -> list[dict]:
        """Rows as JSON (what RUN/evaluation.json holds): one per step, the submission's marked, per-identity AP left out."""
        rows = [{"step": name, **{k: v for k, v in m.items() if k != "per_identity_ap"},
                 **({"submission": True} if name == self.submission_step else {})} for name, m in self.rows]
        rows += [{"step": f"background diagnostic: {name}", **m} for name, m in (self.background or {}).items()]
        return rows


def ablation(raw: np.ndarray, tta: np.ndarray | None, labels, cfg: PostprocessConfig, flip: bool = True,
             exclude: np.ndarray | None = None) -> list[tuple[str, dict]]:
    """Metrics after each box of the chain, cumulatively: raw, + flip TTA, + AQE, + re-rank, + blend, + transform.

    Every box runs with ``cfg``'s parameters, switched on or not, so a user sees what each adds;
    ``flip=False`` leaves flip TTA out. ``exclude`` (N x N, bool) marks pairs left out of every
    metric, e.g. two photos of one sighting.
    """
    return [(name, _score(similarity, labels, exclude))
            for name, similarity in postprocess_steps(tta if flip else raw, every_box(cfg, flip), raw=raw)]


def _score(similarity: np.ndarray, labels, exclude: np.ndarray | None) -> dict:
    return compute_metrics(similarity if exclude is None else np.where(exclude, np.nan, similarity), labels)


def evaluate_embeddings(raw: np.ndarray, tta: np.ndarray | None, labels, postprocess: PostprocessConfig,
                        set_name: str = "validation split", paths: list[Path] = (), frozen: np.ndarray | None = None,
                        exclude: np.ndarray | None = None, alpha: str = "keep") -> Evaluation:
    """Score every step of the chain on embeddings (N, D), L2-normalised, without (``raw``) and
    with flip TTA (``tta``, used when ``postprocess.flip_tta``) of images with identities
    ``labels``; ``frozen`` (N, D'), e.g. the untrained backbone's, adds a first row."""
    labels = np.asarray(labels)
    rows = []
    if frozen is not None:
        rows.append(("frozen pretrained features", _score(cosine_similarity(frozen), labels, exclude)))
    chain = every_box(postprocess, postprocess.flip_tta)
    final = None
    for name, similarity in postprocess_steps(tta if postprocess.flip_tta else raw, chain, raw=raw):
        rows.append((f"trained, {name}" if name == "raw" and frozen is not None else name, _score(similarity, labels, exclude)))
        final = similarity
    submission_step = rows[-1][0]
    if chain != postprocess:  # the configured chain skips boxes: score it as its own row
        final = postprocess_similarity(tta if postprocess.flip_tta else raw, postprocess)
        submission_step = SUBMISSION_STEP
        rows.append((submission_step, _score(final, labels, exclude)))
    return Evaluation(set_name=set_name, paths=list(paths), labels=labels, rows=rows, submission_step=submission_step,
                      embeddings=tta if postprocess.flip_tta else raw, similarity=final, alpha=alpha)


def format_table(rows: list[tuple[str, dict]], keys=METRIC_NAMES, marked: str | None = None) -> str:
    """A plain-text table of metrics per step; ``marked`` gets a ``*``."""
    names = [f"{name}{' *' if name == marked else ''}" for name, _ in rows]
    width = max(len(name) for name in names)
    lines = [f"{'':{width}}  " + "  ".join(f"{metric_label(k):>21}" for k in keys)]
    for name, (_, metrics) in zip(names, rows):
        lines.append(f"{name:{width}}  " + "  ".join(f"{metrics[k]:>21.4f}" for k in keys))
    return "\n".join(lines)


def pair_subsets(groups=None, sides=None) -> dict[str, np.ndarray | None]:
    """Pairs to leave out for each honest view of the score: ``all`` pairs; ``other groups``
    only (e.g. two photos of one sighting share background and light, so they are left out);
    ``same side`` only (an animal's left and right flanks carry different patterns); and both."""
    subsets: dict[str, np.ndarray | None] = {"all pairs": None}
    same_group = None if groups is None else np.asarray(groups)[:, None] == np.asarray(groups)[None, :]
    other_side = None if sides is None else np.asarray(sides)[:, None] != np.asarray(sides)[None, :]
    if same_group is not None:
        subsets["other groups"] = same_group
    if other_side is not None:
        subsets["same side"] = other_side
    if same_group is not None and other_side is not None:
        subsets["other groups, same side"] = same_group | other_side
    return subsets
