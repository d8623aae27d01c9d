"""From trained runs and a test.csv to submission.csv: embed each distinct image once, post-process, look up pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from ..config import PostprocessConfig
from ..data.competition import load_competition
from ..data.tables import PairTable
from ..files import atomic_path
from ..postprocess import postprocess_similarity
from ..runs import Run
from .embedder import Embedder


def write_submission(row_id: pa.Array, similarity: np.ndarray, out: str | Path) -> Path:
    """Write ``row_id,similarity`` atomically (temporary file, then rename)."""
    table = pa.table({"row_id": row_id, "similarity": pa.array(np.asarray(similarity, dtype=np.float32))})
    with atomic_path(out) as tmp:
        pacsv.write_csv(table, tmp, write_options=pacsv.WriteOptions(quoting_style="none", quoting_header="none"))
    return Path(out)


def predict(runs, data_root: str | Path, out: str | Path, postprocess: PostprocessConfig | None = None,
            test_images: str | Path | None = None, device: str = "auto", embedder: Embedder | None = None) -> Path:
    """Embed each distinct test image once per model, post-process, and write the submission.

    ``runs``: run folders (or ``Run`` objects); several, or a multi-seed run, are ensembled.
    ``postprocess`` defaults to the first run's config; with ``auto`` it is cut to the chain that
    scored best on the first run's validation split.
    """
    runs = [r if isinstance(r, Run) else Run(r) for r in ([runs] if isinstance(runs, (str, Path, Run)) else runs)]
    postprocess = postprocess or runs[0].config.postprocess
    if postprocess.auto:
        from ..evaluation.evaluate import validated_chain  # evaluation builds on inference, not the reverse

        postprocess = validated_chain(runs[0], postprocess)
    competition = load_competition(data_root, test_images=test_images, require_test=True)
    pairs = competition.pairs
    embedder = embedder or Embedder.from_runs(runs, device=device, flip_tta=postprocess.flip_tta)
    embeddings = embedder.embed([competition.test_dir / name for name in pairs.images], flip_tta=postprocess.flip_tta)
    return write_pair_similarities(pairs, embeddings, postprocess, out)


def write_pair_similarities(pairs: PairTable, embeddings: np.ndarray, postprocess: PostprocessConfig, out: str | Path) -> Path:
    """Post-process the embeddings of ``pairs.images`` and write every pair's similarity in test.csv order."""
    similarity = postprocess_similarity(embeddings, postprocess)
    return write_submission(pairs.row_id, similarity[pairs.query, pairs.gallery], out)
