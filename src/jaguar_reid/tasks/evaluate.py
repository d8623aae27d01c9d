"""Evaluating a trained run: embed its validation split and score every box of the chain."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import DEFAULT_BACKEND, PostprocessConfig
from ..evaluation.evaluate import Evaluation, evaluate_embeddings
from ..evaluation.metrics import scalar_metrics
from ..inference.embedder import Embedder
from ..postprocess import chain_until, cosine_similarity
from ..runs import Run, run_competition


def evaluate_embedder(embedder: Embedder, paths: list[Path], labels, postprocess: PostprocessConfig,
                      set_name: str = "validation split", baseline: Embedder | None = None,
                      exclude: np.ndarray | None = None) -> Evaluation:
    """Embed ``paths`` and score every step of the chain (see ``evaluate_embeddings``); ``baseline``
    (another embedder, e.g. the untrained backbone) adds a first row of its raw cosine similarity."""
    raw, tta = embedder.embed_views(paths, postprocess.flip_tta)
    frozen = baseline.embed(paths, flip_tta=False) if baseline is not None else None
    return evaluate_embeddings(raw, tta, labels, postprocess, set_name, paths, frozen, exclude,
                               embedder.preprocessing[0].alpha)


def validation_set(run: Run, data_root: str | Path | None = None) -> tuple[list[Path], np.ndarray]:
    """Paths and identities of a run's validation images (from its own data root unless given)."""
    competition, split = run_competition(run, data_root), run.split
    return competition.train_paths(split.val), competition.labels(split.val)


def evaluate_run(run: str | Path | Run, data_root: str | Path | None = None, device: str = "auto",
                 postprocess: PostprocessConfig | None = None, backend: str = DEFAULT_BACKEND) -> Evaluation:
    """The ablation on a run's validation split, saved to RUN/evaluation.json (a refitted run: its
    stage trained without the validation photos, ``Run.validated_members``)."""
    run = run if isinstance(run, Run) else Run(run)
    paths, labels = validation_set(run, data_root)
    embedder = Embedder.from_runs(run.validated_members, device=device, backend=backend)
    evaluation = evaluate_embedder(embedder, paths, labels, postprocess or run.config.postprocess)
    evaluation.background = background_diagnostic(embedder, paths, labels)
    run.write_evaluation(evaluation.to_json())
    return evaluation


def validated_chain(run: Run, postprocess: PostprocessConfig, metric: str = "identity_balanced_map") -> PostprocessConfig:
    """``postprocess`` cut to the chain that scored best on the run's validation split
    (from RUN/evaluation.json, written by ``evaluate_run``, which runs first if needed)."""
    rows = run.evaluation or evaluate_run(run, postprocess=postprocess).to_json()
    chain = [r for r in rows if r["step"] == "raw" or r["step"].startswith("+ ")]
    best = max(r[metric] for r in chain)
    return chain_until(postprocess, next(r["step"] for r in chain if r[metric] == best))


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
        result[name] = scalar_metrics(cosine_similarity(x), labels)
    return result
