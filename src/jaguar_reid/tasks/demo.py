"""``jaguar-reid demo``: the whole job on a CPU, offline, in a few minutes.

Synthetic competition -> untrained (frozen ImageNet) baseline -> train ``lite0-cpu`` -> predict
the test pairs with the full post-processing chain -> score against the hidden answers ->
ablation table and report.html -> a catalogue of the trained animals, which identifies every test
photo (known animal, or new) and prints the open-set numbers.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import typer

from ..config import load_config
from ..data.competition import load_competition
from ..data.synthetic import make_demo_data
from ..data.tables import read_labels
from ..evaluation.evaluate import format_table
from ..evaluation.open_set import (
    format_open_set,
    format_open_set_metrics,
    open_set_metrics,
)
from ..evaluation.scoring import score_submission
from ..files import atomic_path, atomic_write_json
from ..inference.embedder import Embedder
from ..postprocess import describe_chain
from ..report.html import write_report
from ..runs import Run
from ..training.stages import uses_stages
from ..training.trainer import train
from .catalogue import create_catalog
from .evaluate import evaluate_embedder
from .predict import predict

# Sized for a few minutes of training on two CPU cores; every value is a --set away. The preset's
# fine-tuning stage runs 2 epochs here instead of 4 (the demo's quicker config, said in its output).
# A sixth of the animals are held out of training: they calibrate the "new individual" threshold
# and, left out of the catalogue, are the new animals the catalogue step must recognise as new.
DEMO_OVERRIDES = ["data.image_size=128", "data.alpha=gray", "train.batch_size=32", "split.unknown_fraction=0.15",
                  "finetune.epochs=2"]


def run_demo(out: str | Path = "jaguar_demo", scale: float = 0.5, epochs: int | None = None, overrides: list[str] | None = None,
             config: str = "lite0-cpu") -> dict:
    """Run the whole job; ``epochs`` (default: the preset's) and ``overrides`` adjust the preset ``config``."""
    out = Path(out)
    start = time.time()
    say = typer.echo
    data = out / "data"
    if (data / "test_labels.csv").exists():
        say(f"[1/6] synthetic competition already in {data}")
    else:
        say(f"[1/6] generating a synthetic jaguar competition in {data}")
        make_demo_data(data, identities=31, scale=scale, seed=0)
    cfg = load_config(config, DEMO_OVERRIDES + ([f"train.epochs={epochs}"] if epochs is not None else []) + list(overrides or []))
    frozen_cfg = cfg.with_overrides({"train.epochs": 0})
    frozen, trained = Run(out / "frozen"), Run(out / "run")

    say("[2/6] frozen ImageNet features (the untrained baseline)")
    train(frozen_cfg, data, frozen.path, overwrite=_differs(frozen, frozen_cfg))
    say(f"[3/6] training {config}: {_describe_training(cfg, load_config(config))} (rerun to resume if interrupted)")
    summary = train(cfg, data, trained.path, overwrite=_differs(trained, cfg))
    if "choice" in summary:
        say(f"      kept the {summary['stage']} stage: {summary['choice']}")

    say(f"[4/6] predicting the test pairs ({describe_chain(cfg.postprocess)})")
    embedder = Embedder.from_runs([trained])
    submission = predict([trained], data, out / "submission.csv", cfg.postprocess, embedder=embedder)
    scores = score_submission(submission, data / "test.csv", data / "test_labels.csv")

    say("[5/6] scoring every box against the hidden answers, writing the report")
    competition = load_competition(data)
    answers = dict(read_labels(data / "test_labels.csv").values)
    paths = [competition.test_dir / name for name in competition.pairs.images]
    labels = np.array([answers[name] for name in competition.pairs.images], dtype=object)
    evaluation = evaluate_embedder(embedder, paths, labels, cfg.postprocess, set_name="synthetic test set",
                                   baseline=Embedder.from_runs([frozen]))
    atomic_write_json(out / "demo_results.json", evaluation.to_json())
    report = write_report(trained, evaluation, out=out / "report.html", title="jaguar-reid demo")
    say("[6/6] a catalogue of the trained animals (catalog.db), identifying every test photo")
    open_set = _catalogue_step(out, trained, competition, answers)

    _say_results(out, evaluation, scores, open_set)
    say(f"done in {time.time() - start:.0f} s.")
    return {"evaluation": evaluation, "score": scores, "report": report, "submission": submission, "open_set": open_set}


def _say_results(out: Path, evaluation, scores: dict, open_set: dict) -> None:
    say = typer.echo
    say("")
    say(format_table(evaluation.rows, marked=evaluation.submission_step))
    say("")
    say(f"submission.csv scored like the leaderboard: identity-balanced mAP {scores['identity_balanced_map']:.4f} "
        f"({scores['n_pairs']:,} pairs, {scores['n_identities']} identities)")
    say("")
    say(format_open_set(open_set["calibration"]))
    say(f"open set on the test photos: {open_set['metrics']['n_known_queries']} of catalogued and "
        f"{open_set['metrics']['n_unknown_queries']} of new animals")
    say(format_open_set_metrics(open_set["metrics"]))
    say(f"Everything is in {out}/:")
    say("  data/            the synthetic competition (test_labels.csv holds the answers)")
    say("  run/             the trained model, metrics.jsonl, summary.json")
    say("  submission.csv   row_id,similarity for every test pair (the row marked * above)")
    say("  report.html      curves, per-identity AP, retrieval examples, embedding map")
    say("  catalog.db       the catalogue (photos in catalog_images/); the held-out animals' photos wait for review")
    say(f"  jaguar-reid serve {out / 'catalog.db'}      review them in a browser (http://127.0.0.1:8000)")
    say(f"  jaguar-reid identify {out / 'catalog.db'} PHOTO   |   jaguar-reid catalog stats {out / 'catalog.db'}")
    say("Your own data (train.csv, test.csv, train/, test/ in a folder):")
    say("  jaguar-reid train --data-root DATA --out runs/mine && jaguar-reid predict runs/mine --data-root DATA --out submission.csv")
    say("  jaguar-reid score submission.csv --test-csv DATA/test.csv --labels answers.csv")


def _catalogue_step(out: Path, trained: Run, competition, answers: dict) -> dict:
    """Catalogue the training photos of the animals the run trained on (the held-out animals'
    photos are queued for review), identify every test photo, and score the verdicts."""
    path = out / "catalog.db"
    path.unlink(missing_ok=True)
    shutil.rmtree(out / "catalog_images", ignore_errors=True)
    catalog = create_catalog(path, [trained])
    known = competition.train[competition.train["filename"].isin(set(trained.split.train + trained.split.val))]
    labels = out / "catalog_known.csv"
    with atomic_path(labels) as tmp:
        known.to_csv(tmp, index=False)
    catalog.add(competition.train_dir, labels=labels, who="demo")
    results = catalog.identify(competition.test_dir)
    truth = np.array([answers[r.photo] for r in results], dtype=object)
    metrics = open_set_metrics(np.array([[c.decision_score for c in r.candidates] for r in results]),
                               np.array([[c.individual for c in r.candidates] for r in results], dtype=object),
                               truth, np.isin(truth, known["ground_truth"].unique()), catalog.calibration.threshold)
    return {"metrics": metrics, "calibration": catalog.calibration, "results": results}


def _describe_training(cfg, preset) -> str:
    if not uses_stages(cfg):
        return f"{cfg.train.epochs} epochs"
    quicker = (f"; the demo's quicker setting, the preset runs {preset.finetune.epochs}"
               if cfg.finetune.epochs < preset.finetune.epochs else "")
    return (f"a head on frozen features for {cfg.train.epochs} epochs, then fine-tuning for {cfg.finetune.epochs} "
            f"epochs{quicker} where the data supports it (finetune.mode = {cfg.finetune.mode})")


def _differs(run: Run, cfg) -> bool:
    """A demo folder from an earlier, differently configured demo is replaced rather than refused."""
    return (run.path / "config.toml").exists() and not run.config.same_run_as(cfg)
