"""The default's two stages: a head on frozen features, then a fine-tune from it (LP-FT), kept only if it validates better."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from jaguar_reid.cli import app
from jaguar_reid.config import load_config
from jaguar_reid.data.competition import load_competition
from jaguar_reid.data.synthetic import make_demo_data
from jaguar_reid.inference.embedder import Embedder
from jaguar_reid.models.reid import create_reid_model
from jaguar_reid.runs import Run
from jaguar_reid.tasks.evaluate import evaluate_run
from jaguar_reid.training.losses import ReIDCriterion
from jaguar_reid.training.optim import parameter_groups
from jaguar_reid.training.session import Distributed, setup
from jaguar_reid.training.stages import finetune_decision
from jaguar_reid.training.trainer import train

SMALL = ["data.image_size=64", "train.epochs=3", "train.feature_views=1", "data.alpha=gray", "finetune.epochs=1",
         "finetune.batch_size=16", "finetune.sampler=pk"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_demo_data(tmp_path_factory.mktemp("stages") / "data", identities=6, scale=0.3, seed=5)


def _same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_auto_rule_fine_tunes_only_where_the_median_identity_has_enough_photos():
    cfg = load_config("lite0-cpu", ["finetune.min_images_per_identity=12"])
    few = ["a"] * 4 + ["b"] * 5 + ["c"] * 40  # median 5: the nyala regime
    many = ["a"] * 12 + ["b"] * 30 + ["c"] * 3  # median 12: enough
    assert not finetune_decision(cfg, few).run
    assert "median 5 training photos" in finetune_decision(cfg, few).reason
    assert finetune_decision(cfg, many).run
    assert finetune_decision(cfg.with_overrides({"finetune.mode": "always"}), few).run


@pytest.mark.slow
@pytest.mark.parametrize("init, keep, says", [("head", "last", "the last fine-tuning epoch did not beat the head"),
                                              ("pretrained", "last", "the last fine-tuning epoch did not beat the head"),
                                              ("head", "best", "no fine-tuning epoch beat the head")])
def test_head_is_kept_when_fine_tuning_hurts(root, tmp_path, init, keep, says):
    # A learning rate of 5 wrecks every fine-tuned weight: no fine-tuning epoch can beat the head.
    cfg = load_config("lite0-cpu", SMALL + ["finetune.mode=always", "finetune.lr=5.0", "finetune.head_lr=5.0",
                                            f"finetune.init={init}", f"finetune.keep_epoch={keep}", "train.refit=never"])
    summary = train(cfg, root, tmp_path / "run")
    assert summary["stage"] == "head", summary["choice"]
    key = summary["selection_metric"]
    assert not summary["stages"]["finetune"]["best"][key] > summary["stages"]["head"]["best"][key]  # NaN once diverged
    assert says in summary["choice"]
    run = tmp_path / "run"
    assert [m.path for m in Run(run).members] == [run / "stages" / "head"]  # the head is the run's model
    saved = json.loads((run / "summary.json").read_text())
    assert saved["stage"] == "head"
    # "untrained" is the frozen ImageNet model, not the fine-tuning stage's start (the head).
    head_history = [json.loads(line) for line in (run / "stages/head/metrics.jsonl").read_text().splitlines()]
    assert saved["untrained"]["identity_balanced_map"] == head_history[0]["identity_balanced_map"]


@pytest.mark.slow
def test_fine_tuning_is_kept_when_it_validates_better(root, tmp_path):
    # Random-init backbone: the head on frozen random features learns little, fine-tuning it learns the patterns.
    cfg = load_config("lite0-cpu", SMALL + [
        "model.pretrained=none", "finetune.mode=always", "finetune.epochs=4", "finetune.image_size=48", "finetune.lr=2e-3",
        "finetune.head_lr=2e-3", "finetune.freeze_stages=0", "finetune.arcface_scale=10", "finetune.arcface_margin=0.1",
        "split.auto_groups=false", "train.selection_metric=pair_auc", "train.refit=head"])
    summary = train(cfg, root, tmp_path / "run")
    assert summary["stage"] == "finetune", summary["choice"]
    assert "refit" not in summary and not (tmp_path / "run" / "stages" / "head_all").exists()  # refit=head: a kept head only
    key = summary["selection_metric"]
    assert summary["stages"]["finetune"]["best"][key] > summary["stages"]["head"]["best"][key]
    run = tmp_path / "run"
    assert [m.path for m in Run(run).members] == [run / "stages" / "finetune"]
    # The fine-tuned model embeds at its own input size; the folder is used like any run.
    from jaguar_reid.inference.embedder import Embedder

    embedder = Embedder.from_runs(run)
    assert embedder.members[0].preprocessing.image_size == 48
    vectors = embedder.embed(sorted((root / "train" / "train").iterdir())[:2])
    assert vectors.shape == (2, 1280)


@pytest.mark.slow
@pytest.mark.parametrize("kept", ["head", "finetune"])
def test_refit_trains_the_kept_stage_again_on_every_photo(root, tmp_path, kept):
    fine_tune = ["model.pretrained=none", "finetune.mode=always", "finetune.epochs=4", "finetune.image_size=48",
                 "finetune.lr=2e-3", "finetune.head_lr=2e-3", "finetune.freeze_stages=0", "finetune.arcface_scale=10",
                 "finetune.arcface_margin=0.1", "train.selection_metric=pair_auc"]
    keep_head = ["finetune.mode=auto", "finetune.min_images_per_identity=1000"]  # too few photos: the head only
    cfg = load_config("lite0-cpu", SMALL + (fine_tune if kept == "finetune" else keep_head) +
                      ["split.auto_groups=false", f"train.refit={'head' if kept == 'head' else 'always'}"] +
                      (["split.unknown_fraction=0.2"] if kept == "head" else []))  # fine-tuning wins only with every animal
    summary = train(cfg, root, tmp_path / "run")
    assert summary["stage"] == kept, summary["choice"]
    assert summary["refit"] == f"{kept}_all" and "trained again on all" in summary["choice"]
    run = Run(tmp_path / "run")
    stages = run.path / "stages"
    # The run's model is the refit; what scores on validation mean anything for is the stage trained without it.
    assert [m.path for m in run.members] == [stages / f"{kept}_all"]
    assert [m.path for m in run.validated_members] == [stages / kept]
    split, refit = run.split, Run(stages / f"{kept}_all")
    assert split.val and bool(split.unknown) == (kept == "head")
    assert refit.split.train == sorted(split.train + split.val + split.unknown)  # validation and held-out animals included
    trained = set(Run(stages / kept).classes)
    assert set(refit.classes) > trained if split.unknown else set(refit.classes) == trained  # held-out animals are classes now
    # Each refitted stage stops at the epoch its stage kept, on the same schedule (a fine-tune from its refitted head).
    refitted = ["head"] + (["finetune"] if kept == "finetune" else [])
    assert sorted(p.name for p in stages.glob("*_all")) == sorted(f"{name}_all" for name in refitted)
    for name in refitted:
        refit_history = Run(stages / f"{name}_all").history
        assert refit_history[-1]["epoch"] == summary["stages"][name]["best_epoch"]
        # Its validation photos are training photos: validated at its start and end only, nothing to choose between.
        assert [r["epoch"] for r in refit_history if "pair_auc" in r] == sorted({0, refit_history[-1]["epoch"]})
        assert refit_history[-1]["lr"] == next(r["lr"] for r in Run(stages / name).history
                                               if r["epoch"] == summary["stages"][name]["best_epoch"])
    assert not _same_tensors(load_file(refit.path / "best.safetensors"), load_file(stages / kept / "best.safetensors"))
    # evaluate scores the stage that has not seen the validation photos, not the refit, and says so.
    result = CliRunner().invoke(app, ["evaluate", str(run.path), "--no-report", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert f"scored {stages / kept}, trained without these validation photos" in result.output
    evaluation = evaluate_run(run)
    assert np.allclose(evaluation.embeddings, Embedder.from_runs(stages / kept).embed(evaluation.paths, flip_tta=True), atol=1e-5)
    assert not np.allclose(evaluation.embeddings, Embedder.from_runs(refit).embed(evaluation.paths, flip_tta=True), atol=1e-3)


@pytest.mark.slow
def test_keep_epoch_last_keeps_the_schedules_end_even_when_training_only_hurts(root, tmp_path):
    # lr 5 wrecks the weights: "best" would keep epoch 0 (the untrained model), "last" keeps epoch 2.
    cfg = load_config("lite0-finetune", ["model.backbone=resnet18", "model.pretrained=none", "data.image_size=32",
                                         "train.epochs=2", "train.batch_size=8", "optimizer.lr=5.0",
                                         "split.auto_groups=false", "train.keep_epoch=last"])
    summary = train(cfg, root, tmp_path / "run")
    assert summary["best_epoch"] == 2 and summary["best"] == summary["last"]
    run = Run(tmp_path / "run")
    best, last = load_file(run.path / "best.safetensors"), load_file(run.path / "last.safetensors")
    assert best.keys() == last.keys()
    assert all(torch.allclose(best[k].double(), last[k].double(), rtol=0, atol=0, equal_nan=True) for k in best)  # NaN: diverged


@pytest.mark.slow
def test_fine_tuning_starts_from_the_trained_head(root, tmp_path):
    cfg = load_config("lite0-cpu", SMALL + ["finetune.mode=never"])
    train(cfg, root, tmp_path / "head")
    head = Run(tmp_path / "head")
    competition = load_competition(root)
    ft_cfg = cfg.finetune.stage_config(cfg)
    session = setup(ft_cfg, competition, head.split, Run(tmp_path / "ft"), None, Distributed(), init_from=head)
    assert _same_tensors(session.model.state_dict(), load_file(head.path / "best.safetensors"))
    assert _same_tensors(session.criterion.state_dict(), load_file(head.path / "best_criterion.safetensors"))
    # Without init_from the centres are imprinted from the ImageNet features instead.
    fresh = setup(ft_cfg, competition, head.split, Run(tmp_path / "fresh"), None, Distributed())
    assert not _same_tensors(fresh.criterion.state_dict(), session.criterion.state_dict())
    # The fine-tuning stage unfreezes the backbone past its frozen stages.
    assert session.model.backbone.blocks[-1][0].conv_pw.weight.requires_grad
    assert not session.model.backbone.conv_stem.weight.requires_grad


def test_layer_decay_lowers_the_learning_rate_of_earlier_layers_and_skips_frozen_ones():
    cfg = load_config("lite0-cpu", ["model.pretrained=none", "model.freeze_stages=2", "optimizer.layer_decay=0.5",
                                    "optimizer.lr=1.0", "optimizer.head_lr_multiplier=1.0"])
    model = create_reid_model(cfg.model)
    groups = parameter_groups(cfg, model, ReIDCriterion(cfg, 4, model.embedding_dim))
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    last, earlier = model.backbone.conv_head.weight, model.backbone.blocks[3][0].conv_pw.weight
    assert lr_of[id(last)] == 1.0
    assert lr_of[id(earlier)] < lr_of[id(model.backbone.blocks[5][0].conv_pw.weight)] < 1.0
    assert id(model.backbone.conv_stem.weight) not in lr_of  # frozen: not given to the optimizer
    assert lr_of[id(model.neck.weight)] == 1.0


@pytest.mark.slow
def test_ema_weights_are_the_ones_validated_and_saved(root, tmp_path):
    cfg = load_config("lite0-finetune", ["model.backbone=resnet18", "model.pretrained=none", "data.image_size=32",
                                         "train.epochs=1", "train.batch_size=8", "train.ema_decay=0.9", "split.auto_groups=false"])
    train(cfg, root, tmp_path / "run")
    run = Run(tmp_path / "run")
    state = run.load_state()
    saved = load_file(run.path / "last.safetensors")
    assert "ema" in state
    ema = {k.removeprefix("module."): v for k, v in state["ema"].items()}
    conv = "backbone.layer4.0.conv1.weight"  # a trained layer (the first stages are frozen)
    assert torch.equal(saved[conv], ema[conv])  # the EMA is what is saved
    assert not torch.equal(saved[conv], state["model"][conv])  # and it differs from the raw weights
