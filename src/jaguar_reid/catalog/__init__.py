"""A catalogue of known individuals: photos stored by content, embeddings per model, the decision
log, and open-set identification against it (SQLite by default, PostgreSQL by URL)."""

from .catalog import AddReport, Catalog
from .gallery import Candidate, Gallery, Identification, identify
from .search import EmbeddingIndex

__all__ = ["AddReport", "Candidate", "Catalog", "EmbeddingIndex", "Gallery", "Identification", "identify"]
