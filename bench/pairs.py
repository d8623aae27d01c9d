"""Benchmark the pair flow at Kaggle scale: 10 million pairs (about 3,200 test images).

Writes a test.csv of all ordered pairs, then times (1) reading it, post-processing 3,163
embeddings with the full chain and writing submission.csv, and (2) scoring that submission.
The model's forward pass is not included (it depends on the backbone and device).

    python bench/pairs.py [--images 3163] [--workdir bench/out]
"""

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from jaguar_reid.config import PostprocessConfig
from jaguar_reid.data.tables import read_pairs
from jaguar_reid.evaluation.scoring import score_submission
from jaguar_reid.inference.pipeline import write_pair_similarities


def write_test_csv(folder: Path, n_images: int, n_identities: int = 300) -> None:
    names = np.array([f"img_{i:05d}.png" for i in range(n_images)], dtype=object)
    q, g = np.meshgrid(np.arange(n_images), np.arange(n_images), indexing="ij")
    keep = q != g
    q, g = q[keep], g[keep]
    table = pa.table({"row_id": pa.array(np.arange(len(q)).astype(str)), "query_image": pa.array(names[q]),
                      "gallery_image": pa.array(names[g])})
    pacsv.write_csv(table, folder / "test.csv", write_options=pacsv.WriteOptions(quoting_style="none", quoting_header="none"))
    labels = pa.table({"filename": pa.array(names), "ground_truth": pa.array((np.arange(n_images) % n_identities).astype(str))})
    pacsv.write_csv(labels, folder / "labels.csv", write_options=pacsv.WriteOptions(quoting_style="none", quoting_header="none"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=3163)
    parser.add_argument("--workdir", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    write_test_csv(args.workdir, args.images)
    results = {"images": args.images}

    start = time.perf_counter()
    pairs = read_pairs(args.workdir / "test.csv")
    rng = np.random.default_rng(0)
    identity = np.arange(args.images) % 300
    embeddings = rng.normal(size=(300, 512))[identity] + 1.5 * rng.normal(size=(args.images, 512))
    write_pair_similarities(pairs, embeddings.astype(np.float32), PostprocessConfig(), args.workdir / "submission.csv")
    results["pairs"] = len(pairs)
    results["predict_seconds"] = round(time.perf_counter() - start, 1)

    start = time.perf_counter()
    metrics = score_submission(args.workdir / "submission.csv", args.workdir / "test.csv", args.workdir / "labels.csv")
    results["score_seconds"] = round(time.perf_counter() - start, 1)
    results["identity_balanced_map"] = round(metrics["identity_balanced_map"], 4)
    results["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 2)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
