"""Catalogue search speed: exact cosine search against 100,000 synthetic embeddings on this CPU.

Goals (two cores): one photo against 100,000 in under 50 ms; 1,000 photos against 100,000 in
under 30 s. Times the top-k image search and ``catalog.gallery.identify``, the path
``Catalog.identify`` takes after embedding (chunks of 256 queries, so memory stays bounded).

    python bench/search.py [--gallery 100000] [--dim 1280] [--individuals 2000] [--queries 1000]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from jaguar_reid.catalog import EmbeddingIndex, Gallery, identify
from jaguar_reid.evaluation.open_set import OpenSetCalibration
from jaguar_reid.postprocess import l2_normalize


def best_of(repeats: int, function) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gallery", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1280, help="embedding size (lite0-cpu: 1280)")
    parser.add_argument("--individuals", type=int, default=2_000)
    parser.add_argument("--queries", type=int, default=1_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    gallery = l2_normalize(rng.standard_normal((args.gallery, args.dim), dtype=np.float32))
    labels = rng.integers(0, args.individuals, args.gallery).astype(str)
    queries = l2_normalize(rng.standard_normal((args.queries, args.dim), dtype=np.float32))
    start = time.perf_counter()
    index = EmbeddingIndex(gallery)  # what a catalogue does once when it loads
    catalogue = Gallery(index, labels.astype(object), [{"sha256": f"{i:064x}", "original_name": f"{i}.jpg", "path": ""}
                                                       for i in range(args.gallery)])
    load = time.perf_counter() - start
    # the default: mean of each individual's 3 best photos, no normalisation
    calibration = OpenSetCalibration("mean_top_k", 3, "none", 0.5, 0.05, [0.0, 1.0], [0.0, 1.0])

    def identify_scores(q):
        return identify(catalogue, q, calibration, top_k=5)

    results = {
        "gallery": args.gallery, "dim": args.dim, "individuals": args.individuals, "queries": args.queries,
        "index_seconds": load,
        "one_photo_top10_ms": 1000 * best_of(5, lambda: index.search(queries[:1], k=10)),
        "one_photo_individual_scores_ms": 1000 * best_of(5, lambda: identify_scores(queries[:1])),
        "many_photos_top10_s": best_of(1, lambda: index.search(queries, k=10)),
        "many_photos_individual_scores_s": best_of(1, lambda: identify_scores(queries)),
    }
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
