"""How well do automatic near-duplicate groups recover the true sightings?

For each data root with a metadata.csv (filename, sighting), the frozen features of the config's
backbone group near-duplicates within each identity (``split.auto_groups``) at several quantiles
of the different-identity similarities; the groups are compared with the true sightings by the
adjusted Rand index (ARI, 1 = the same partition, 0 = chance) and by how many validation pairs a
split on them would leak (photo pairs of one true sighting that end up in different groups).

    python bench/auto_groups.py ../shared/data/cattle ../shared/data/nyala [--quantiles 0.99,0.999]

Results: bench/out/auto_groups.json and .md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

from jaguar_reid.config import load_config
from jaguar_reid.data.competition import load_competition
from jaguar_reid.data.groups import near_duplicate_groups
from jaguar_reid.data.split import read_metadata_column
from jaguar_reid.runs import Run
from jaguar_reid.training.features import automatic_groups


def split_pairs(groups, truth) -> float:
    """Share of same-sighting photo pairs that the groups put apart (they could land on both sides of a split)."""
    groups, truth = np.asarray(groups), np.asarray(truth)
    same_truth = truth[:, None] == truth[None, :]
    np.fill_diagonal(same_truth, False)
    return float((same_truth & (groups[:, None] != groups[None, :])).sum() / max(same_truth.sum(), 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, nargs="+")
    parser.add_argument("--config", default="lite0-cpu")
    parser.add_argument("--quantiles", default="0.5,0.8,0.9,0.95,0.99")
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    cfg = load_config(args.config)
    rows = []
    for root in args.data:
        if not (root / "metadata.csv").exists():
            print(f"skipped: no metadata.csv in {root}")
            continue
        competition = load_competition(root)
        files = competition.train["filename"].tolist()
        truth = read_metadata_column(root / "metadata.csv", "sighting", files)
        labels = competition.labels(files)
        cache = Run(args.out / "auto_groups" / root.name)
        automatic_groups(cfg, competition, cache)  # embeds once into the cache
        features = next(np.load(p) for p in sorted((cache.path / "embeddings").glob("groups-*.npy")))
        for quantile in map(float, args.quantiles.split(",")):
            result = near_duplicate_groups(features, labels, quantile)
            rows.append({"data": root.name, "quantile": quantile, "threshold": round(result.threshold, 4),
                         "photos": len(files), "true_sightings": len(set(truth)), "auto_groups": result.count,
                         "ari": round(adjusted_rand_score(truth, result.groups), 4),
                         "same_sighting_pairs_split": round(split_pairs(result.groups, truth), 4)})
            print(rows[-1])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "auto_groups.json").write_text(json.dumps(rows, indent=1))
    lines = ["| data | quantile | threshold | photos | true sightings | automatic groups | ARI | same-sighting pairs put apart |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['data']} | {r['quantile']} | {r['threshold']} | {r['photos']} | {r['true_sightings']} | {r['auto_groups']} | "
              f"{r['ari']} | {r['same_sighting_pairs_split']:.1%} |" for r in rows]
    (args.out / "auto_groups.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
