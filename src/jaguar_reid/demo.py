"""``jaguar-reid demo``: the whole job on a CPU, offline, in a few minutes.

Synthetic competition -> untrained (frozen ImageNet) baseline -> train ``lite0-cpu`` -> predict
the test pairs with the full post-processing chain -> score against the hidden answers ->
ablation table and report.html.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import typer

from .config import load_config
from .data.competition import load_competition
from .data.synthetic import make_demo_data
from .data.tables import read_labels
from .evaluation.evaluate import evaluate_embedder, format_table
from .evaluation.scoring import score_submission
from .files import atomic_write_json
from .inference.embedder import Embedder
from .inference.pipeline import predict
from .postprocess import describe_chain
from .report.html import write_report
from .runs import Run
from .training.trainer import train

# Sized for about three minutes of training on two CPU cores; every value is a --set away.
DEMO_OVERRIDES = ["data.image_size=128", "data.alpha=gray", "train.batch_size=32"]


def run_demo(out: str | Path = "jaguar_demo", scale: float = 0.5, epochs: int | None = None, overrides: list[str] | None = None,
             config: str = "lite0-cpu") -> dict:
    """Run the whole job; ``epochs`` (default: the preset's) and ``overrides`` adjust the preset ``config``."""
    out = Path(out)
    start = time.time()
    say = typer.echo
    data = out / "data"
    if (data / "test_labels.csv").exists():
        say(f"[1/5] synthetic competition already in {data}")
    else:
        say(f"[1/5] generating a synthetic jaguar competition in {data}")
        make_demo_data(data, identities=31, scale=scale, seed=0)
    cfg = load_config(config, DEMO_OVERRIDES + ([f"train.epochs={epochs}"] if epochs is not None else []) + list(overrides or []))
    frozen_cfg = cfg.with_overrides({"train.epochs": 0})
    frozen, trained = Run(out / "frozen"), Run(out / "run")

    say("[2/5] frozen ImageNet features (the untrained baseline)")
    train(frozen_cfg, data, frozen.path, overwrite=_differs(frozen, frozen_cfg))
    say(f"[3/5] training {config} for {cfg.train.epochs} epochs (rerun to resume if interrupted)")
    train(cfg, data, trained.path, overwrite=_differs(trained, cfg))

    say(f"[4/5] predicting the test pairs ({describe_chain(cfg.postprocess)})")
    embedder = Embedder.from_runs([trained])
    submission = predict([trained], data, out / "submission.csv", cfg.postprocess, embedder=embedder)
    scores = score_submission(submission, data / "test.csv", data / "test_labels.csv")

    say("[5/5] scoring every box against the hidden answers, writing the report")
    competition = load_competition(data)
    answers = dict(read_labels(data / "test_labels.csv").values)
    paths = [competition.test_dir / name for name in competition.pairs.images]
    labels = np.array([answers[name] for name in competition.pairs.images], dtype=object)
    evaluation = evaluate_embedder(embedder, paths, labels, cfg.postprocess, set_name="synthetic test set",
                                   baseline=Embedder.from_runs([frozen]))
    atomic_write_json(out / "demo_results.json", evaluation.to_json())
    report = write_report(trained, evaluation, out=out / "report.html", title="jaguar-reid demo")

    say("")
    say(format_table(evaluation.rows, marked=evaluation.submission_step))
    say("")
    say(f"submission.csv scored like the leaderboard: identity-balanced mAP {scores['identity_balanced_map']:.4f} "
        f"({scores['n_pairs']:,} pairs, {scores['n_identities']} identities)")
    say(f"done in {time.time() - start:.0f} s. Everything is in {out}/:")
    say("  data/            the synthetic competition (test_labels.csv holds the answers)")
    say("  run/             the trained model, metrics.jsonl, summary.json")
    say("  submission.csv   row_id,similarity for every test pair (the row marked * above)")
    say("  report.html      curves, per-identity AP, retrieval examples, embedding map")
    say("Your own data (train.csv, test.csv, train/, test/ in a folder):")
    say("  jaguar-reid train --data-root DATA --out runs/mine && jaguar-reid predict runs/mine --data-root DATA --out submission.csv")
    say("  jaguar-reid score submission.csv --test-csv DATA/test.csv --labels answers.csv")
    return {"evaluation": evaluation, "score": scores, "report": report, "submission": submission}


def _differs(run: Run, cfg) -> bool:
    """A demo folder from an earlier, differently configured demo is replaced rather than refused."""
    return (run.path / "config.toml").exists() and not run.config.same_run_as(cfg)
