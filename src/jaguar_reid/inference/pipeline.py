"""From run folders and images to similarities: cached embeddings, ensembles, ablations, submissions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from ..config import Config, PostprocessConfig
from ..data.competition import load_competition
from ..data.dataset import ImageSet
from ..evaluation.metrics import METRIC_NAMES, compute_metrics
from ..postprocess import (
    average_query_expansion, blend, euclidean_distance, flip_tta, k_reciprocal_rerank, l2_normalize,
    postprocess_similarity, score_transform,
)
from ..data.split import SPLIT_FILE, Split
from ..data.tables import PairTable
from ..training.trainer import BEST_WEIGHTS, DATA_FILE, load_run_model, read_run_config, run_members
from .embed import embed_images, resolve_device

CACHE_DIR = "embeddings"
EVALUATION_FILE = "evaluation.json"


def _cache_key(member: Path, paths: list[Path], image_size: int, alpha: str, flip: bool) -> str:
    digest = hashlib.sha1()
    weights = (member / BEST_WEIGHTS).stat()
    digest.update(f"{weights.st_size}:{weights.st_mtime_ns}:{image_size}:{alpha}:{flip}".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def member_embeddings(member: Path, paths: list[Path], flip: bool, device: str = "auto", batch_size: int | None = None,
                      num_workers: int = 0, label: str = "") -> np.ndarray:
    """Embeddings of ``paths`` by one single-seed run (plain or mirrored), cached in the run folder."""
    cfg = read_run_config(member)
    key = _cache_key(member, paths, cfg.data.image_size, cfg.data.alpha, flip)
    cache = member / CACHE_DIR / f"{key}.npy"
    if cache.exists():
        return np.load(cache)
    model, _ = load_run_model(member)
    torch_device = resolve_device(device if device != "auto" else cfg.train.device)
    model.to(torch_device)
    images = ImageSet(paths, None, cfg.data.image_size, cfg.data.alpha, cache=False)
    embeddings = embed_images(model, images, batch_size or cfg.train.eval_batch_size, torch_device, cfg.train.precision,
                              flip=flip, num_workers=num_workers,
                              progress=f"embedding{' mirrored' if flip else ''} {label or member.name}")
    cache.parent.mkdir(exist_ok=True)
    tmp = cache.with_name(cache.stem + ".tmp.npy")
    np.save(tmp, embeddings)
    tmp.replace(cache)
    return embeddings


def ensemble_embeddings(runs: list[Path], paths: list[Path], flip: bool, **kwargs) -> np.ndarray:
    """Concatenated L2-normalised embeddings of every seed of every run, scaled so that their
    cosine similarity is the mean of the members' cosine similarities. Flip TTA per member."""
    members = [m for run in runs for m in run_members(run)]
    parts = []
    for member in members:
        plain = member_embeddings(member, paths, flip=False, **kwargs)
        parts.append(flip_tta(plain, member_embeddings(member, paths, flip=True, **kwargs)) if flip else l2_normalize(plain))
    return np.concatenate(parts, axis=1) / np.sqrt(len(parts))


def evaluate_run(run: str | Path, data_root: str | Path | None = None, **embed_kwargs) -> tuple[list[tuple[str, dict]], dict]:
    """The ablation table on a run's validation split; also returns what a report needs."""
    run = Path(run)
    split = Split.load(run / SPLIT_FILE)
    source = json.loads((run / DATA_FILE).read_text())
    competition = load_competition(data_root or source["data_root"], train_images=None if data_root else source["train_images"])
    table = competition.train.set_index("filename")
    labels = table.loc[split.val, "ground_truth"].to_numpy()
    paths = competition.train_paths(split.val)
    cfg = run_config(run)
    raw = ensemble_embeddings([run], paths, flip=False, **embed_kwargs)
    tta = ensemble_embeddings([run], paths, flip=True, **embed_kwargs)
    rows = ablation(raw, tta, labels, cfg.postprocess)
    save_rows(rows, run / EVALUATION_FILE)
    final = tta if cfg.postprocess.flip_tta else raw
    return rows, {"paths": paths, "labels": labels, "embeddings": final,
                  "similarity": postprocess_similarity(final, cfg.postprocess)}


def run_config(run: Path) -> Config:
    """The config of a run folder (of its first seed, for a multi-seed run)."""
    return read_run_config(run_members(run)[0])


def ablation(raw: np.ndarray, tta: np.ndarray, labels, cfg: PostprocessConfig, flip: bool = True,
             exclude: np.ndarray | None = None) -> list[tuple[str, dict]]:
    """Metrics after each box of the chain, cumulatively: raw, +flip TTA, +AQE, +re-rank, +blend, +transform.

    ``raw`` and ``tta`` are embeddings without and with flip TTA; ``flip=False`` leaves the flip
    box out of the chain. Every box runs here with ``cfg``'s parameters, switched on or not, so a
    user sees what each adds. ``exclude`` (N x N, bool) marks pairs left out of every metric,
    e.g. two photos of one sighting.
    """

    def score(similarity):
        return compute_metrics(similarity if exclude is None else np.where(exclude, np.nan, similarity), labels)

    x = l2_normalize(raw)
    results = [("raw", score(x @ x.T))]
    if flip:
        x = l2_normalize(tta)
        results.append(("+ flip TTA", score(x @ x.T)))
    x = average_query_expansion(x, cfg.aqe_k, cfg.aqe_alpha)
    similarity = x @ x.T
    results.append(("+ query expansion", score(similarity)))
    reranked = k_reciprocal_rerank(euclidean_distance(x), cfg.rerank_k1, cfg.rerank_k2, cfg.rerank_lambda)
    results.append(("+ k-reciprocal re-rank", score(1.0 - reranked)))
    blended = blend(similarity, reranked, cfg.blend_weight)
    results.append((f"+ blend (w={cfg.blend_weight:g})", score(blended)))
    results.append((f"+ transform ({cfg.score_transform})", score(score_transform(blended, cfg.score_transform))))
    return results


def write_submission(row_id: pa.Array, similarity: np.ndarray, out: str | Path) -> Path:
    """Write ``row_id,similarity`` atomically (temporary file, then rename)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"row_id": row_id, "similarity": pa.array(np.asarray(similarity, dtype=np.float32))})
    tmp = out.with_name(out.name + ".tmp")
    pacsv.write_csv(table, tmp, write_options=pacsv.WriteOptions(quoting_style="none", quoting_header="none"))
    tmp.replace(out)
    return out


def predict(runs: list[str | Path], data_root: str | Path, out: str | Path, postprocess: PostprocessConfig | None = None,
            test_images: str | Path | None = None, **embed_kwargs) -> Path:
    """Embed each distinct test image once per model, post-process, and write the submission."""
    runs = [Path(r) for r in runs]
    competition = load_competition(data_root, test_images=test_images, require_test=True)
    pairs = competition.pairs
    paths = [competition.test_dir / name for name in pairs.images]
    postprocess = postprocess or run_config(runs[0]).postprocess
    embeddings = ensemble_embeddings(runs, paths, postprocess.flip_tta, **embed_kwargs)
    return write_pair_similarities(pairs, embeddings, postprocess, out)


def write_pair_similarities(pairs: PairTable, embeddings: np.ndarray, postprocess: PostprocessConfig, out: str | Path) -> Path:
    """Post-process the embeddings of ``pairs.images`` and write every pair's similarity in test.csv order."""
    similarity = postprocess_similarity(embeddings, postprocess)
    return write_submission(pairs.row_id, similarity[pairs.query, pairs.gallery], out)


def format_table(rows: list[tuple[str, dict]], keys=METRIC_NAMES) -> str:
    width = max(len(name) for name, _ in rows)
    header = f"{'':{width}}  " + "  ".join(f"{k:>21}" for k in keys)
    lines = [header]
    for name, metrics in rows:
        lines.append(f"{name:{width}}  " + "  ".join(f"{metrics[k]:>21.4f}" for k in keys))
    return "\n".join(lines)


def save_rows(rows: list[tuple[str, dict]], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps([{"step": name, **metrics} for name, metrics in rows], indent=1))
    tmp.replace(path)
