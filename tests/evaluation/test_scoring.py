"""`score`: a local leaderboard with clear errors for bad submissions."""

import re

import numpy as np
import pandas as pd
import pytest

from jaguar_reid.data import DataError
from jaguar_reid.evaluation.scoring import score_submission


def _truth_submission(root, out, noise=None, seed=0):
    pairs = pd.read_csv(root / "test.csv", dtype=str)
    labels = dict(pd.read_csv(root / "test_labels.csv", dtype=str).values)
    same = (pairs["query_image"].map(labels) == pairs["gallery_image"].map(labels)).astype(float)
    if noise is not None:
        same = np.random.default_rng(seed).random(len(same)) if noise == "random" else same + noise
    pd.DataFrame({"row_id": pairs["row_id"], "similarity": same}).to_csv(out, index=False)
    return out


def test_true_labels_score_one(demo_root, tmp_path):
    sub = _truth_submission(demo_root, tmp_path / "sub.csv")
    metrics = score_submission(sub, demo_root / "test.csv", demo_root / "test_labels.csv")
    for key in ("identity_balanced_map", "retrieval_map", "retrieval_top1", "pair_auc", "pair_ap"):
        assert metrics[key] == 1.0
    n = len(pd.read_csv(demo_root / "test_labels.csv"))
    assert metrics["n_pairs"] == n * (n - 1) and metrics["n_queries"] == n and metrics["n_identities"] == 6


def test_random_submission_scores_at_chance(demo_root, tmp_path):
    aucs = []
    for seed in range(5):
        sub = _truth_submission(demo_root, tmp_path / f"r{seed}.csv", noise="random", seed=seed)
        aucs.append(score_submission(sub, demo_root / "test.csv", demo_root / "test_labels.csv")["pair_auc"])
    assert abs(np.mean(aucs) - 0.5) < 0.05


def test_shuffled_rows_score_the_same(demo_root, tmp_path):
    sub = _truth_submission(demo_root, tmp_path / "sub.csv", noise="random")
    frame = pd.read_csv(sub, dtype=str).sample(frac=1.0, random_state=1)
    frame.to_csv(tmp_path / "shuffled.csv", index=False)
    a = score_submission(sub, demo_root / "test.csv", demo_root / "test_labels.csv")
    b = score_submission(tmp_path / "shuffled.csv", demo_root / "test.csv", demo_root / "test_labels.csv")
    assert a == b


def _edit(demo_root, tmp_path, change):
    frame = pd.read_csv(_truth_submission(demo_root, tmp_path / "sub.csv"), dtype=str)
    frame = change(frame)
    frame.to_csv(tmp_path / "bad.csv", index=False)
    return tmp_path / "bad.csv"


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.iloc[1:], "bad.csv: 1 row_id(s) of {root}/test.csv missing, first '0' (test.csv line 2)"),
        (lambda f: pd.concat([f, f.iloc[[3]]]), "bad.csv: duplicate row_id '3'"),
        (lambda f: pd.concat([f, pd.DataFrame({"row_id": ["zzz"], "similarity": ["0.1"]})]),
         "bad.csv line {last}: unknown row_id 'zzz' (not in {root}/test.csv; 1 unknown in all)"),
        (lambda f: f.assign(similarity=f["similarity"].where(f.index != 2, "high")), "bad.csv line 4: similarity 'high' is not a finite number"),
        (lambda f: f.assign(similarity=f["similarity"].where(f.index != 5, "inf")), "bad.csv line 7: similarity 'inf' is not a finite number"),
    ],
)
def test_bad_submissions(demo_root, tmp_path, change, message):
    bad = _edit(demo_root, tmp_path, change)
    last = len(pd.read_csv(bad)) + 1
    with pytest.raises(DataError, match=re.escape(message.format(root=demo_root, last=last))):
        score_submission(bad, demo_root / "test.csv", demo_root / "test_labels.csv")


def test_pair_image_missing_from_answers(demo_root, tmp_path):
    sub = _truth_submission(demo_root, tmp_path / "sub.csv")
    answers = pd.read_csv(demo_root / "test_labels.csv").iloc[1:]
    answers.to_csv(tmp_path / "answers.csv", index=False)
    with pytest.raises(DataError, match=r"answers.csv: 1 image\(s\) of .*test.csv have no ground_truth, first 'test_"):
        score_submission(sub, demo_root / "test.csv", tmp_path / "answers.csv")
