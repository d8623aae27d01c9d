"""Evaluate embeddings on a labelled image set: every step of the post-processing chain, scored.

``evaluate_embedder`` is the one path from "trained run(s) + labelled images" to an
``Evaluation`` (the ablation rows and what a report shows); ``evaluate_run`` applies it to a run's
own validation split. ``evaluate``, the demo and the benchmarks all go through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import PostprocessConfig
from ..data.competition import load_competition
from ..postprocess import chain_until, every_box, postprocess_similarity, postprocess_steps
from ..runs import Run
from .metrics import METRIC_NAMES, compute_metrics, metric_label, scalar_metrics

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


def evaluate_embedder(embedder, paths: list[Path], labels, postprocess: PostprocessConfig, set_name: str = "validation split",
                      baseline=None, exclude: np.ndarray | None = None) -> Evaluation:
    """Score every step of the chain on ``paths`` (with identities ``labels``); ``baseline`` (another
    embedder, e.g. the untrained backbone) adds a first row of its raw cosine similarity."""
    labels = np.asarray(labels)
    raw, tta = embedder.embed_views(paths, postprocess.flip_tta)
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
                 postprocess: PostprocessConfig | None = None, engine: str = "torch") -> Evaluation:
    """The ablation on a run's validation split, saved to RUN/evaluation.json."""
    from ..inference.embedder import Embedder

    run = run if isinstance(run, Run) else Run(run)
    paths, labels = validation_set(run, data_root)
    embedder = Embedder.from_runs([run], device=device, engine=engine)
    evaluation = evaluate_embedder(embedder, paths, labels, postprocess or run.config.postprocess)
    evaluation.background = background_diagnostic(embedder, paths, labels)
    run.write_evaluation(evaluation.to_json())
    return evaluation


@dataclass
class OpenSetData:
    """A run's validation split played as a catalogue: its training photos are the catalogue
    (``gallery``), validation photos of trained animals and every photo of a held-out one
    (``split.unknown_fraction``) are the new photos (``queries``); embeddings L2-normalised."""

    queries: np.ndarray
    query_labels: np.ndarray
    gallery: np.ndarray
    gallery_labels: np.ndarray
    simulate_unknown: bool  # no held-out identities: known queries must also play new animals

    @property
    def similarity(self) -> np.ndarray:
        return self.queries @ self.gallery.T


def open_set_data(run: Run, embedder, data_root: str | Path | None = None) -> OpenSetData:
    """Embed a run's open-set validation (see ``OpenSetData``) with ``embedder``."""
    source, split = run.data_source, run.split
    competition = load_competition(data_root or source["data_root"], train_images=None if data_root else source["train_images"])
    labels = competition.train.set_index("filename")["ground_truth"]
    queries = split.val + split.unknown
    return OpenSetData(embedder.embed(competition.train_paths(queries)), labels.loc[queries].to_numpy(),
                       embedder.embed(competition.train_paths(split.train)), labels.loc[split.train].to_numpy(),
                       simulate_unknown=not split.unknown)


def calibrate_run(run: str | Path | Run, data_root: str | Path | None = None, device: str = "auto",
                  embedder=None, save: bool = True, engine: str = "torch"):
    """Open-set calibration of a run on its ``open_set_data``, saved to RUN/open_set.json.
    ``embedder`` (e.g. an ensemble with this run first) replaces the run's own; then pass ``save=False``."""
    from ..inference.embedder import Embedder
    from .open_set import calibrate_open_set

    run = run if isinstance(run, Run) else Run(run)
    settings = run.config.open_set
    data = open_set_data(run, embedder or Embedder.from_runs([run], device=device, engine=engine), data_root)
    calibration = calibrate_open_set(data.similarity, data.gallery_labels, data.query_labels,
                                     settings.individual_score, settings.top_k_images, settings.target_known_called_new,
                                     simulate_unknown=data.simulate_unknown, normalization=settings.normalization)
    if save:
        run.write_open_set(calibration)
    return calibration


def validated_chain(run: Run, postprocess: PostprocessConfig, metric: str = "identity_balanced_map") -> PostprocessConfig:
    """``postprocess`` cut to the chain that scored best on the run's validation split
    (from RUN/evaluation.json, written by ``evaluate_run``, which runs first if needed)."""
    rows = run.evaluation or evaluate_run(run, postprocess=postprocess).to_json()
    chain = [r for r in rows if r["step"] == "raw" or r["step"].startswith("+ ")]
    best = max(r[metric] for r in chain)
    return chain_until(postprocess, next(r["step"] for r in chain if r[metric] == best))


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


def background_diagnostic(embedder, paths: list[Path], labels) -> dict[str, dict] | None:
    """How much of the score the background carries, for cut-outs with an alpha channel.

    Scores the images as the model sees them (its alpha policy), the animal alone (background
    painted flat gray) and the background alone (animal painted flat gray), raw cosine similarity,
    no flip TTA. A background-only score far above chance means the model can match images
    without looking at the animal. Returns None when no image has an alpha channel.
    """
    from PIL import Image

    animal, background, has_alpha = [], [], False
    for path in paths:
        with Image.open(path) as opened:
            opened.load()
            rgba = opened.convert("RGBA")
        mask = rgba.getchannel("A")
        has_alpha = has_alpha or mask.getextrema()[0] < 255
        gray = Image.new("RGB", rgba.size, (128, 128, 128))
        animal.append(Image.composite(rgba.convert("RGB"), gray, mask))
        background.append(Image.composite(gray, rgba.convert("RGB"), mask))
    if not has_alpha:
        return None
    views = {"as the model sees them": paths, "animal only (background gray)": animal,
             "background only (animal gray)": background}
    result = {}
    for name, images in views.items():
        x = embedder.embed(images, flip_tta=False)
        result[name] = scalar_metrics(x @ x.T, labels)
    return result
