"""A Kaggle submission from trained runs: embed the test images once, post-process, write every pair."""

from __future__ import annotations

from pathlib import Path

from ..config import PostprocessConfig
from ..data.competition import load_competition
from ..inference.embedder import Embedder
from ..inference.pipeline import write_pair_similarities
from ..runs import as_runs
from .evaluate import validated_chain


def predict(runs, data_root: str | Path, out: str | Path, postprocess: PostprocessConfig | None = None,
            test_images: str | Path | None = None, device: str = "auto", embedder: Embedder | None = None) -> Path:
    """Embed each distinct test image once per model, post-process, and write the submission.

    ``runs``: run folders (or ``Run`` objects); several, or a multi-seed run, are ensembled.
    ``postprocess`` defaults to the first run's config; with ``auto`` it is cut to the chain that
    scored best on the first run's validation split.
    """
    runs = as_runs(runs)
    postprocess = postprocess or runs[0].config.postprocess
    if postprocess.auto:
        postprocess = validated_chain(runs[0], postprocess)
    competition = load_competition(data_root, test_images=test_images, require_test=True)
    pairs = competition.pairs
    embedder = embedder or Embedder.from_runs(runs, device=device, flip_tta=postprocess.flip_tta)
    embeddings = embedder.embed([competition.test_dir / name for name in pairs.images], flip_tta=postprocess.flip_tta)
    return write_pair_similarities(pairs, embeddings, postprocess, out)
