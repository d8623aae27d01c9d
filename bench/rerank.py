"""Benchmark k-reciprocal re-ranking: the literal reference transcription vs the sparse version.

    python bench/rerank.py            # N = 8,000 both ways, N = 20,000 sparse only
Each measurement runs in its own process so that peak memory (max RSS) is its own.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def embeddings(n: int, dim: int = 256, seed: int = 0) -> np.ndarray:
    """Clustered vectors, like re-ID embeddings: about 40 images per identity."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(1, n // 40), dim))
    return (centres[rng.integers(0, len(centres), n)] + 0.8 * rng.normal(size=(n, dim))).astype(np.float32)


def measure(n: int, method: str) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from jaguar_reid.postprocess import euclidean_distance, k_reciprocal_rerank
    from rerank_reference import re_ranking_literal

    distance = euclidean_distance(embeddings(n))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    (k_reciprocal_rerank if method == "sparse" else re_ranking_literal)(distance)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"n": n, "method": method, "seconds": round(seconds, 2), "peak_rss_gb": round(peak / 1e9, 2),
            "rss_before_gb": round(before * 1024 / 1e9, 2), "output_gb": round(n * n * 4 / 1e9, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=2, metavar=("N", "METHOD"))
    parser.add_argument("--sizes", default="8000:literal,8000:sparse,20000:sparse")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(int(args.child[0]), args.child[1])))
        return
    for item in args.sizes.split(","):
        n, method = item.split(":")
        out = subprocess.run([sys.executable, __file__, "--child", n, method], capture_output=True, text=True, check=True)
        print(out.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
