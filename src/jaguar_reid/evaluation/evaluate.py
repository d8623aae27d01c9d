"""Evaluate embeddings on a labelled image set: every step of the post-processing chain, scored.

``evaluate_embedder`` is the one path from "trained run(s) + labelled images" to an
``Evaluation`` (the ablation rows and what a report shows); ``evaluate_run`` applies it to a run's
own validation split. ``evaluate``, the demo and the benchmarks all go through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import PostprocessConfig
from ..data.competition import load_competition
from ..postprocess import every_box, postprocess_similarity, postprocess_steps
from ..runs import Run
from .metrics import METRIC_NAMES, compute_metrics

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
    notes: list[str] = field(default_factory=list)

    def metrics(self, step: str) -> dict:
        return dict(self.rows)[step]

    def to_json(self) -> list[dict]:
        return [{"step": name, **{k: v for k, v in m.items() if k != "per_identity_ap"},
                 **({"submission": True} if name == self.submission_step else {})} for name, m in self.rows]


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


def evaluate_embedder(embedder, paths: list[Path], labels, postprocess: PostprocessConfig, set_name: str = "validation split",
                      baseline=None, exclude: np.ndarray | None = None) -> Evaluation:
    """Score every step of the chain on ``paths`` (with identities ``labels``); ``baseline`` (another
    embedder, e.g. the untrained backbone) adds a first row of its raw cosine similarity."""
    labels = np.asarray(labels)
    raw, tta = embedder.embed_views(paths)
    rows = []
    if baseline is not None:
        frozen = baseline.embed(paths, flip_tta=False)
        rows.append(("frozen pretrained features", _score(frozen @ frozen.T, labels, exclude)))
    chain = every_box(postprocess, postprocess.flip_tta)
    final = None
    for name, similarity in postprocess_steps(tta if postprocess.flip_tta else raw, chain, raw=raw):
        rows.append((f"trained, {name}" if name == "raw" and baseline is not None else name, _score(similarity, labels, exclude)))
        final = similarity
    submission_step = rows[-1][0]
    if chain != postprocess:  # the configured chain skips boxes: score it as its own row
        final = postprocess_similarity(tta if postprocess.flip_tta else raw, postprocess)
        submission_step = SUBMISSION_STEP
        rows.append((submission_step, _score(final, labels, exclude)))
    return Evaluation(set_name=set_name, paths=list(paths), labels=labels, rows=rows, submission_step=submission_step,
                      embeddings=tta if postprocess.flip_tta else raw, similarity=final,
                      alpha=embedder.members[0].preprocessing.alpha)


def validation_set(run: Run, data_root: str | Path | None = None) -> tuple[list[Path], np.ndarray]:
    """Paths and identities of a run's validation images (from its own data root unless given)."""
    source = run.data_source
    competition = load_competition(data_root or source["data_root"], train_images=None if data_root else source["train_images"])
    split = run.split
    labels = competition.train.set_index("filename").loc[split.val, "ground_truth"].to_numpy()
    return competition.train_paths(split.val), labels


def evaluate_run(run: str | Path | Run, data_root: str | Path | None = None, device: str = "auto",
                 postprocess: PostprocessConfig | None = None) -> Evaluation:
    """The ablation on a run's validation split, saved to RUN/evaluation.json."""
    from ..inference.embedder import Embedder

    run = run if isinstance(run, Run) else Run(run)
    paths, labels = validation_set(run, data_root)
    evaluation = evaluate_embedder(Embedder.from_runs([run], device=device), paths, labels,
                                   postprocess or run.config.postprocess)
    run.write_evaluation(evaluation.to_json())
    return evaluation


def format_table(rows: list[tuple[str, dict]], keys=METRIC_NAMES, marked: str | None = None) -> str:
    """A plain-text table of metrics per step; ``marked`` gets a ``*``."""
    names = [f"{name}{' *' if name == marked else ''}" for name, _ in rows]
    width = max(len(name) for name in names)
    lines = [f"{'':{width}}  " + "  ".join(f"{k:>21}" for k in keys)]
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


def subset_metrics(similarity: np.ndarray, labels, subsets: dict[str, np.ndarray | None]) -> dict[str, dict]:
    """Every metric of ``similarity`` on each subset of pairs (see ``pair_subsets``)."""
    result = {}
    for name, exclude in subsets.items():
        metrics = _score(similarity, labels, exclude)
        metrics.pop("per_identity_ap")
        result[name] = metrics
    return result
