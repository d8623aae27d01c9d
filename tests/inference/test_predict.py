"""Inference: cached embeddings, ensembles, ablation, and a valid submission that beats chance."""

import numpy as np
import pandas as pd
import pytest
import torch

from jaguar_reid.config import PostprocessConfig, load_config
from jaguar_reid.data.competition import load_competition
from jaguar_reid.data.dataset import ImageSet
from jaguar_reid.evaluation.metrics import compute_metrics
from jaguar_reid.evaluation.scoring import score_submission
from jaguar_reid.inference import embed as embed_module
from jaguar_reid.inference import embedder as embedder_module
from jaguar_reid.inference.embedder import Embedder
from jaguar_reid.postprocess import l2_normalize
from jaguar_reid.runs import Run
from jaguar_reid.tasks import evaluate_run, predict
from jaguar_reid.training.trainer import train

# Photo-by-photo split: on 6 tiny identities the automatic groups leave too few photos to learn from.
LITE = ["data.image_size=96", "train.epochs=2", "train.batch_size=16", "data.alpha=gray", "split.auto_groups=false"]


@pytest.fixture(scope="module")
def run(demo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "lite"
    train(load_config("lite0-finetune", LITE), demo_root, out)
    return out


@pytest.fixture(scope="module")
def seeds_run(demo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "seeds"
    train(load_config("lite0-finetune", LITE + ["train.epochs=1"]), demo_root, out, seeds=[1, 2])
    return out


@pytest.fixture(scope="module")
def test_paths(demo_root):
    competition = load_competition(demo_root)
    return [competition.test_dir / n for n in competition.pairs.images]


@pytest.mark.slow
def test_submission_is_valid_and_beats_chance(run, demo_root, tmp_path):
    path = predict([run], demo_root, tmp_path / "submission.csv")
    submission = pd.read_csv(path, dtype={"row_id": str})
    test = pd.read_csv(demo_root / "test.csv", dtype={"row_id": str})
    assert submission["row_id"].tolist() == test["row_id"].tolist()
    assert submission["similarity"].notna().all()
    assert submission["similarity"].between(0, 1).all()
    assert not list(tmp_path.glob("*.tmp*"))
    metrics = score_submission(path, demo_root / "test.csv", demo_root / "test_labels.csv")
    chance = [score_submission(_random(test, tmp_path / f"r{s}.csv", s), demo_root / "test.csv",
                               demo_root / "test_labels.csv")["identity_balanced_map"] for s in range(3)]
    assert metrics["identity_balanced_map"] > np.mean(chance) + 0.15
    assert metrics["pair_auc"] > 0.7


def _random(test, path, seed):
    pd.DataFrame({"row_id": test["row_id"], "similarity": np.random.default_rng(seed).random(len(test))}).to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_embeddings_are_cached(run, demo_root, tmp_path, monkeypatch):
    predict([run], demo_root, tmp_path / "a.csv")

    def refuse(*args, **kwargs):
        raise AssertionError("recomputed embeddings")

    monkeypatch.setattr(embedder_module, "embed_images", refuse)
    predict([run], demo_root, tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


@pytest.mark.slow
def test_switching_boxes_changes_the_output(run, demo_root, tmp_path):
    full = predict([run], demo_root, tmp_path / "full.csv", PostprocessConfig())
    raw = predict([run], demo_root, tmp_path / "raw.csv", PostprocessConfig(
        flip_tta=False, query_expansion=False, rerank=False, score_transform="none"))
    a, b = pd.read_csv(full)["similarity"], pd.read_csv(raw)["similarity"]
    assert not np.allclose(a, b)
    assert b.min() < 0.9  # raw cosine similarities, untransformed


@pytest.mark.slow
def test_ensemble_averages_cosine_similarities(run, seeds_run, test_paths):
    members = [run, seeds_run / "seed_1", seeds_run / "seed_2"]
    singles = [Embedder.from_runs([m]).embed(test_paths, flip_tta=True) for m in members]
    together = Embedder.from_runs([run, seeds_run]).embed(test_paths, flip_tta=True)
    assert together.shape[1] == sum(s.shape[1] for s in singles)
    assert np.allclose(together @ together.T, np.mean([s @ s.T for s in singles], axis=0), atol=1e-5)


@pytest.mark.slow
def test_embedder_takes_paths_pil_images_and_tensors(run, test_paths):
    from PIL import Image

    embedder = Embedder.from_runs(run, device="cpu", cache=False)
    from_paths = embedder.embed(test_paths[:3], flip_tta=False)
    from_pil = embedder.embed([Image.open(p) for p in test_paths[:3]], flip_tta=False)  # RGBA cut-outs
    assert np.allclose(from_paths, from_pil, atol=1e-5)  # alpha policy and resizing travel with the run
    size = Run(run).config.data.image_size
    pixels = torch.stack([ImageSet([p], image_size=size, alpha="gray")[0][0] for p in test_paths[:3]])
    assert np.allclose(embedder.embed(pixels, flip_tta=False), from_paths, atol=1e-5)
    assert np.allclose(np.linalg.norm(from_paths, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_evaluate_ablation_rows(run):
    evaluation = evaluate_run(run)
    assert [name for name, _ in evaluation.rows] == ["raw", "+ flip TTA", "+ query expansion", "+ k-reciprocal re-rank",
                                                     "+ blend (w=0.2)", "+ transform (clip)"]
    assert evaluation.submission_step == "+ transform (clip)"
    raw = l2_normalize(Embedder.from_runs([run]).embed(evaluation.paths, flip_tta=False))
    assert evaluation.rows[0][1]["identity_balanced_map"] == compute_metrics(raw @ raw.T, evaluation.labels)["identity_balanced_map"]
    saved = Run(run).evaluation
    assert [r["step"] for r in saved if r.get("submission")] == ["+ transform (clip)"]


@pytest.mark.slow
def test_background_diagnostic_on_cut_outs(run):
    evaluation = evaluate_run(run)
    assert list(evaluation.background) == ["as the model sees them", "animal only (background gray)",
                                           "background only (animal gray)"]
    # The synthetic backgrounds are drawn independently of the animal, so the background alone
    # matches worse than the animal does; and this run composites on gray, so the model sees the animal only.
    seen, animal, background = (evaluation.background[k]["identity_balanced_map"] for k in evaluation.background)
    assert background < animal
    assert abs(seen - animal) < 0.05


@pytest.mark.slow
def test_auto_chain_uses_the_best_validated_step(run, demo_root, tmp_path):
    from jaguar_reid.postprocess import chain_until
    from jaguar_reid.tasks import validated_chain

    evaluation = evaluate_run(run)
    best = evaluation.best_step()
    chosen = validated_chain(Run(run), PostprocessConfig())
    assert chosen == chain_until(PostprocessConfig(), best)
    auto = predict([run], demo_root, tmp_path / "auto.csv", PostprocessConfig(auto=True))
    explicit = predict([run], demo_root, tmp_path / "explicit.csv", chosen.model_copy(update={"auto": False}))
    assert auto.read_text() == explicit.read_text()
    advice = evaluation.advice(PostprocessConfig())
    assert advice[0].startswith("what each box did here")


@pytest.mark.slow
def test_a_partial_chain_is_scored_as_its_own_submission_row(run):
    evaluation = evaluate_run(run, postprocess=PostprocessConfig(rerank=False))
    names = [name for name, _ in evaluation.rows]
    assert names[-1] == evaluation.submission_step == "submission (the configured chain)"
    assert evaluation.rows[-1][1]["identity_balanced_map"] == evaluation.metrics("+ query expansion")["identity_balanced_map"]


@pytest.mark.slow
def test_flip_embeds_the_mirror_image(run, demo_root):
    model = Run(run).load_model()
    cfg = Run(run).config
    paths = sorted((demo_root / "test" / "test").glob("*.png"))[:3]
    images = ImageSet(paths, image_size=cfg.data.image_size, alpha=cfg.data.alpha)
    flipped = embed_module.embed_images(model, images, flip=True, progress=None)
    manual = model(torch.stack([images[i][0].flip(2) for i in range(3)])).detach().numpy()
    assert np.allclose(flipped, manual, atol=1e-4)


@pytest.mark.slow
def test_multi_seed_run_loads_one_seed_on_request(seeds_run):
    from jaguar_reid.errors import RunFolderError

    with pytest.raises(RunFolderError, match="holds 2 seeds"):
        Run(seeds_run).load_model()
    assert Run(seeds_run).load_model(seed=2).embedding_dim > 0
    assert [m.path.name for m in Run(seeds_run).members] == ["seed_1", "seed_2"]
