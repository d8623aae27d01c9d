"""Training: learns, is deterministic, resumes exactly after a kill, runs several seeds, refuses bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from jaguar_reid.config import load_config
from jaguar_reid.data import DataError
from jaguar_reid.data.synthetic import make_demo_data
from jaguar_reid.errors import RunFolderError
from jaguar_reid.training.optim import lr_factor
from jaguar_reid.training.trainer import train

TINY = ["model.backbone=resnet18", "model.pretrained=none", "model.embedding_dim=32", "data.image_size=48",
        "train.batch_size=8", "train.images_per_identity=2", "train.epochs=3", "optimizer.lr=1e-3", "train.eval_batch_size=32"]


@pytest.fixture(scope="module")
def train_root(tmp_path_factory):
    return make_demo_data(tmp_path_factory.mktemp("train") / "data", identities=8, scale=0.3, seed=11)


def _history(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_second")} for row in rows]


@pytest.mark.slow
def test_pretrained_lite0_learns_beyond_frozen_features(tmp_path):
    root = make_demo_data(tmp_path / "data", identities=16, scale=0.45, seed=11)
    cfg = load_config("lite0-finetune", ["data.image_size=112", "train.epochs=6", "train.batch_size=16", "data.alpha=gray"])
    summary = train(cfg, root, tmp_path / "run")
    frozen, trained = summary["untrained"]["identity_balanced_map"], summary["best"]["identity_balanced_map"]
    assert trained > frozen + 0.08, (frozen, trained)
    for name in ("config.toml", "split.json", "labels.json", "metrics.jsonl", "best.safetensors", "last.safetensors",
                 "last_state.pt", "summary.json", "data.json"):
        assert (tmp_path / "run" / name).exists(), name
    history = _history(tmp_path / "run")
    assert [row["epoch"] for row in history] == [0, 1, 2, 3, 4, 5, 6]
    assert {"loss", "lr", "identity_balanced_map", "pair_auc", "pair_ap", "retrieval_map", "retrieval_top1"} <= set(history[1])


@pytest.mark.slow
def test_same_seed_twice_gives_identical_metrics(train_root, tmp_path):
    cfg = load_config("lite0-finetune", TINY + ["train.epochs=2"])
    train(cfg, train_root, tmp_path / "a")
    train(cfg, train_root, tmp_path / "b")
    assert _history(tmp_path / "a") == _history(tmp_path / "b")
    other = load_config("lite0-finetune", TINY + ["train.epochs=2", "train.seed=7"])
    train(other, train_root, tmp_path / "c")
    assert _history(tmp_path / "c")[-1]["loss"] != _history(tmp_path / "a")[-1]["loss"]
    # The split does not depend on the training seed.
    assert (tmp_path / "a" / "split.json").read_text() == (tmp_path / "c" / "split.json").read_text()


def _train_command(root, out):
    args = [sys.executable, "-m", "jaguar_reid", "train", "--config", "lite0-finetune", "--data-root", str(root), "--out", str(out)]
    for item in TINY + ["train.epochs=4"]:
        args += ["--set", item]
    return args


@pytest.mark.slow
def test_resume_after_kill_reaches_the_uninterrupted_result(train_root, tmp_path):
    env = {**os.environ, "TQDM_DISABLE": "1"}
    subprocess.run(_train_command(train_root, tmp_path / "full"), check=True, env=env, capture_output=True)
    killed = tmp_path / "killed"
    process = subprocess.Popen(_train_command(train_root, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        metrics = killed / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:  # epochs 0, 1 and 2 done
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len((killed / "metrics.jsonl").read_text().splitlines())
    assert done < 5, "training finished before it could be killed"
    subprocess.run(_train_command(train_root, killed), check=True, env=env, capture_output=True)
    assert _history(killed) == _history(tmp_path / "full")


@pytest.mark.slow
def test_different_config_in_run_folder_is_refused(train_root, tmp_path):
    cfg = load_config("lite0-finetune", TINY + ["train.epochs=1"])
    train(cfg, train_root, tmp_path / "run")
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    changed = load_config("lite0-finetune", TINY + ["train.epochs=2"])
    with pytest.raises(RunFolderError, match="holds a run with a different config; pass --resume"):
        train(changed, train_root, tmp_path / "run")
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before
    train(changed, train_root, tmp_path / "run", resume=True)  # continue to 2 epochs
    assert [row["epoch"] for row in _history(tmp_path / "run")] == [0, 1, 2]
    train(changed, train_root, tmp_path / "run", overwrite=True)
    assert _history(tmp_path / "run")[0]["epoch"] == 0


@pytest.mark.slow
def test_multi_seed_runs_share_the_split_and_summarise(train_root, tmp_path):
    cfg = load_config("lite0-finetune", TINY + ["train.epochs=1"])
    summary = train(cfg, train_root, tmp_path / "run", seeds=[1, 2])
    assert summary["seeds"] == [1, 2] and set(summary["runs"]) == {"1", "2"}
    assert set(summary["mean"]) == set(summary["std"]) >= {"identity_balanced_map", "pair_auc"}
    split = (tmp_path / "run" / "split.json").read_text()
    for seed in (1, 2):
        assert (tmp_path / "run" / f"seed_{seed}" / "split.json").read_text() == split
        assert (tmp_path / "run" / f"seed_{seed}" / "best.safetensors").exists()


def _labels_root(tmp_path, rows):
    from PIL import Image

    (tmp_path / "train").mkdir(parents=True)
    for name, _ in rows:
        Image.new("RGB", (16, 16), (len(name) * 20 % 255, 0, 0)).save(tmp_path / "train" / name)
    pd.DataFrame(rows, columns=["filename", "ground_truth"]).to_csv(tmp_path / "train.csv", index=False)
    return tmp_path


@pytest.mark.slow
def test_one_identity_is_refused(tmp_path):
    root = _labels_root(tmp_path, [(f"{i}.png", "solo") for i in range(6)])
    with pytest.raises(DataError, match="training needs at least two identities, found 1"):
        train(load_config("lite0-finetune", TINY), root, tmp_path / "run")


@pytest.mark.slow
def test_no_identity_with_two_validation_images_is_refused(tmp_path):
    root = _labels_root(tmp_path, [(f"{i}.png", f"id{i % 3}") for i in range(9)])
    with pytest.raises(DataError, match="no identity has two images in the validation split"):
        train(load_config("lite0-finetune", TINY), root, tmp_path / "run")


def test_cosine_schedule_matches_the_seed():
    cfg = load_config("eva02-large-448")
    assert [round(lr_factor(e, cfg), 4) for e in range(10)] == [
        1.0, 0.9755, 0.9045, 0.7939, 0.6545, 0.5, 0.3455, 0.2061, 0.0955, 0.0245]
    warm = load_config("convnext-triplet")
    assert lr_factor(0, warm) == 0.5 and lr_factor(1, warm) == 1.0


@pytest.mark.slow
def test_class_column_trains_one_class_per_identity_and_flank(train_root, tmp_path):
    train_csv = pd.read_csv(train_root / "train.csv")
    meta = train_csv.assign(flank=["left" if i % 2 else "right" for i in range(len(train_csv))])
    meta.to_csv(tmp_path / "meta.csv", index=False)
    cfg = load_config("lite0-finetune", TINY + ["train.epochs=1", f"split.metadata_csv={tmp_path / 'meta.csv'}",
                                           "train.class_column=flank", "split.auto_groups=false"])
    summary = train(cfg, train_root, tmp_path / "run")
    classes = json.loads((tmp_path / "run" / "labels.json").read_text())
    assert len(classes) == 2 * summary["n_identities"]
    assert all(c.rsplit("/", 1)[1] in ("left", "right") for c in classes)
    missing = load_config("lite0-finetune", TINY + ["train.class_column=flank"])
    with pytest.raises(DataError, match="train.class_column is set but split.metadata_csv is not"):
        train(missing, train_root, tmp_path / "other")


@pytest.mark.slow
def test_the_untrained_model_is_kept_when_training_only_hurts(train_root, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from jaguar_reid.training import loop

    original = loop.train_epoch

    def train_then_wreck(session, epoch):  # training that certainly hurts: every embedding becomes the same
        record = original(session, epoch)
        with torch.no_grad():
            for parameter in loop.unwrap(session.model).neck.parameters():
                parameter.zero_()
        return record

    monkeypatch.setattr(loop, "train_epoch", train_then_wreck)
    cfg = load_config("lite0-cpu", TINY + ["train.epochs=2", "finetune.mode=never",
                                           "train.selection_metric=identity_balanced_map"])
    run = tmp_path / "run"
    summary = train(cfg, train_root, run)
    history = _history(run)
    assert max(row["identity_balanced_map"] for row in history[1:]) < history[0]["identity_balanced_map"]
    assert summary["best_epoch"] == 0 and summary["best"] == summary["untrained"]
    best, last = load_file(str(run / "best.safetensors")), load_file(str(run / "last.safetensors"))
    assert not torch.equal(best["neck.weight"], last["neck.weight"])  # the kept weights are epoch 0's, not the wreck


@pytest.mark.slow
def test_selection_uses_other_groups_when_groups_are_known(train_root, tmp_path):
    table = pd.read_csv(train_root / "train.csv")
    table.assign(sighting=[f"{g}_{i // 2}" for i, g in enumerate(table["ground_truth"])]).to_csv(tmp_path / "meta.csv", index=False)
    cfg = load_config("lite0-finetune", TINY + ["train.epochs=1", f"split.metadata_csv={tmp_path / 'meta.csv'}",
                                                "split.group_column=sighting"])
    summary = train(cfg, train_root, tmp_path / "run")
    assert summary["selection_metric"] == "pair_auc_other_groups"
    assert "identity_balanced_map_other_groups" in summary["best"]
    assert "identity_balanced_map_other_groups" in _history(tmp_path / "run")[1]


@pytest.mark.slow
def test_without_a_group_column_near_duplicates_stay_on_one_side_of_the_split(train_root, tmp_path):
    import shutil

    from jaguar_reid.data.split import AUTO_GROUPS
    from jaguar_reid.runs import Run

    # Every training photo twice under another name (a burst of two): a random split separates many pairs.
    root = tmp_path / "data"
    shutil.copytree(train_root, root)
    table = pd.read_csv(root / "train.csv")
    images = root / "train" / "train"
    for name in table["filename"]:
        shutil.copyfile(images / name, images / f"copy_{name}")
    doubled = pd.concat([table, table.assign(filename="copy_" + table["filename"])])
    doubled.to_csv(root / "train.csv", index=False)
    sides = {}
    for auto in (True, False):
        cfg = load_config("lite0-cpu", ["data.image_size=64", "train.epochs=0", f"split.auto_groups={str(auto).lower()}"])
        summary = train(cfg, root, tmp_path / f"run_{auto}")
        split = Run(tmp_path / f"run_{auto}").split
        val = set(split.val)
        sides[auto] = sum((name in val) != (f"copy_{name}" in val) for name in table["filename"])
        if auto:
            assert split.group_column == AUTO_GROUPS and split.notes[0].startswith("automatic groups:")
            assert summary["selection_metric"].endswith("_other_groups")
    assert sides[True] == 0  # every photo and its copy on one side
    assert sides[False] > 5  # the image-by-image split separates them (what the groups prevent)


@pytest.mark.slow
def test_head_only_trains_on_cached_features_and_resumes_from_them(train_root, tmp_path, monkeypatch):
    import numpy as np

    from jaguar_reid.inference.embedder import Embedder
    from jaguar_reid.runs import Run
    from jaguar_reid.training import features as feature_cache

    cfg = load_config("lite0-cpu", ["model.backbone=resnet18", "model.pretrained=none", "data.image_size=48",
                                    "train.epochs=3", "train.feature_views=2", "train.batch_size=16", "finetune.mode=never"])
    run = Run(tmp_path / "run")
    summary = train(cfg.with_overrides({"train.epochs": 2}), train_root, run.path)
    cached = sorted(p.name for p in (run.path / "embeddings").glob("*.npy") if not p.name.endswith("-paths.npy"))
    assert [name.split("-")[0] for name in cached] == ["groups", "train", "val"]
    cached = cached[1:]
    features = np.load(run.path / "embeddings" / cached[0])
    assert features.shape == (summary["n_train_images"], 3, 512)  # plain + 2 augmented views, resnet18 width
    state = run.load_state()
    frozen_before = {k: v for k, v in state["model"].items() if k.startswith("backbone.")}

    def refuse(*args, **kwargs):
        raise AssertionError("features recomputed on resume")

    monkeypatch.setattr(feature_cache, "embed_images", refuse)  # resuming must read the cached features
    train(cfg, train_root, run.path, resume=True)
    monkeypatch.undo()
    weights = run.load_model("last").state_dict()
    assert all(torch.equal(weights[k], v) for k, v in frozen_before.items())  # the backbone never moved
    assert not torch.equal(weights["neck.weight"], torch.eye(512))  # the neck did
    assert [row["epoch"] for row in _history(run.path)] == [0, 1, 2, 3]
    paths = [train_root / "train" / "train" / name for name in run.split.val[:3]]
    vectors = Embedder.from_runs(run, cache=False).embed(paths)
    assert vectors.shape == (3, 512)


def test_feature_cache_embeds_only_the_photos_it_has_not_seen(train_root, tmp_path, monkeypatch):
    from jaguar_reid.data.dataset import ImageSet
    from jaguar_reid.models import create_reid_model
    from jaguar_reid.runs import Run
    from jaguar_reid.training import features as feature_cache

    cfg = load_config("lite0-cpu", ["model.backbone=resnet18", "model.pretrained=none", "data.image_size=32",
                                    "train.feature_backend=torch"])
    model = create_reid_model(cfg.model).eval()
    paths = sorted((train_root / "train" / "train").iterdir())[:10]
    embedded = []
    original = feature_cache.embed_images
    monkeypatch.setattr(feature_cache, "embed_images", lambda model, images, *a, **k: (
        embedded.append(len(images)), original(model, images, *a, **k))[1])
    run = Run(tmp_path / "run" / "stages" / "head_all")
    assert run.feature_cache.path == tmp_path / "run"  # a stage (a refit too) shares its parent's features

    def features(chosen):
        return feature_cache.cached_features(cfg, run, model, ImageSet(chosen, None, 32), 1, torch.device("cpu"), "train")

    first = features(paths[:6])
    assert embedded == [6, 6]  # the plain view, then one augmented view
    second = features(paths[9:2:-1])  # 3 photos known, 4 new, in another order
    assert embedded[2:] == [4, 4]
    assert second.shape == (7, 2, 512)
    assert torch.equal(second[-3:], first[3:6].flip(0))  # each photo's row, whatever the order asked for
    again = features(paths[::-1])
    assert len(embedded) == 4  # nothing new to embed
    assert torch.equal(again[:7], second)


def test_identity_neck_makes_epoch_zero_equal_to_the_frozen_backbone():
    from jaguar_reid.models import create_reid_model

    cfg = load_config("lite0-cpu", ["model.backbone=resnet18", "model.pretrained=none"]).model
    model = create_reid_model(cfg).eval()
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(images), model.pooled(images))
