"""Writing a submission: post-process the embeddings of a test set's distinct images, look up every pair, write atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from ..config import PostprocessConfig
from ..data.tables import PairTable
from ..files import atomic_path
from ..postprocess import postprocess_similarity


def write_submission(row_id: pa.Array, similarity: np.ndarray, out: str | Path) -> Path:
    """Write ``row_id,similarity`` atomically (temporary file, then rename)."""
    table = pa.table({"row_id": row_id, "similarity": pa.array(np.asarray(similarity, dtype=np.float32))})
    with atomic_path(out) as tmp:
        pacsv.write_csv(table, tmp, write_options=pacsv.WriteOptions(quoting_style="none", quoting_header="none"))
    return Path(out)


def write_pair_similarities(pairs: PairTable, embeddings: np.ndarray, postprocess: PostprocessConfig, out: str | Path) -> Path:
    """Post-process the embeddings of ``pairs.images`` and write every pair's similarity in test.csv order."""
    similarity = postprocess_similarity(embeddings, postprocess)
    return write_submission(pairs.row_id, similarity[pairs.query, pairs.gallery], out)
