"""ONNX export equals the PyTorch embedder; onnxruntime is an embedding engine."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from typer.testing import CliRunner

from jaguar_reid.cli import app
from jaguar_reid.config import load_config
from jaguar_reid.inference.embedder import Embedder
from jaguar_reid.inference.onnx import export_onnx
from jaguar_reid.training.trainer import train

TINY = ["data.image_size=64", "train.epochs=1", "train.batch_size=16", "data.alpha=gray", "train.feature_views=1"]


@pytest.fixture(scope="module")
def two_seed_run(demo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "run"
    train(load_config("lite0-cpu", TINY), demo_root, out, seeds=[1, 2])
    return out


@pytest.fixture(scope="module")
def photos(demo_root):
    return sorted((demo_root / "test" / "test").glob("*.png"))[:6]


def _pixels(embedder, photos):
    from jaguar_reid.inference.embedder import _Images

    images = _Images(photos, embedder.members[0].preprocessing)
    return torch.stack([images[i][0] for i in range(len(images))]).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("flip", [False, True])
def test_exported_ensemble_equals_the_embedder(two_seed_run, photos, tmp_path, flip):
    path = export_onnx([two_seed_run], tmp_path / "model.onnx", flip_tta=flip)
    embedder = Embedder.from_runs([two_seed_run], device="cpu", flip_tta=flip, cache=False, backend="torch")
    expected = embedder.embed(photos)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": _pixels(embedder, photos)})[0]
    assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-4
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["image_size"] == "64" and meta["alpha"] == "gray" and meta["flip_tta"] == str(flip).lower()


@pytest.mark.slow
def test_onnx_backend_matches_torch(two_seed_run, photos):
    torch_vectors = Embedder.from_runs([two_seed_run], device="cpu", cache=False, backend="torch").embed(photos)
    onnx_embedder = Embedder.from_runs([two_seed_run], cache=False, backend="onnx")
    assert {m.backend for m in onnx_embedder.members} == {"onnx"}
    onnx_vectors = onnx_embedder.embed(photos)
    assert np.abs(onnx_vectors - torch_vectors).max() < 1e-4
    exported = [p for p in two_seed_run.glob("seed_*/**/onnx/*.onnx") if not p.name.startswith("features-")]
    assert len(exported) == 2  # exported once per member, reused


@pytest.mark.slow
def test_export_command(two_seed_run, tmp_path):
    result = CliRunner().invoke(app, ["export", str(two_seed_run), "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0 and (tmp_path / "m.onnx").exists(), result.output
    result = CliRunner().invoke(app, ["export", str(two_seed_run), "--format", "tflite", "--out", str(tmp_path / "m.x")])
    assert result.exit_code == 2 and "'tflite' is not one of 'onnx'" in result.output  # Typer validates the Enum


@pytest.mark.slow
def test_the_old_engine_spelling_still_chooses_the_backend(two_seed_run):
    """``engine=`` was the runtime's name until 0.3: still honoured, with a DeprecationWarning."""
    with pytest.warns(DeprecationWarning, match="backend"):
        embedder = Embedder.from_runs([two_seed_run], cache=False, engine="torch")
    assert {m.backend for m in embedder.members} == {"torch"}  # the default (auto) would pick onnx on the CPU
    with pytest.raises(ValueError, match="backend must be one of torch, onnx, auto"):
        Embedder.from_runs([two_seed_run], backend="tensorrt")


@pytest.mark.slow
def test_head_only_features_from_onnxruntime_equal_pytorch(demo_root, tmp_path):
    features = {}
    for engine in ("torch", "onnx"):
        out = tmp_path / engine
        train(load_config("lite0-cpu", TINY + [f"train.feature_backend={engine}", "finetune.mode=never"]), demo_root, out)
        features[engine] = {p.name: np.load(p) for p in sorted((out / "embeddings").glob("*.npy"))}
        # each cached feature set names its photos, row by row: the same photos in the same order either way
        paths = {name: features[engine].pop(name) for name in [n for n in features[engine] if n.endswith("-paths.npy")]}
        features[engine + " paths"] = {name: [Path(x).name for x in rows] for name, rows in paths.items()}
    assert features["torch paths"] == features["onnx paths"] and len(features["torch paths"]) == 2
    # The frozen features that group near-duplicates for the split, then the training and validation features.
    assert features["torch"].keys() == features["onnx"].keys() and len(features["torch"]) == 3
    for name, expected in features["torch"].items():  # pooled features, as the neck and the cosine see them
        got, want = (x / np.linalg.norm(x, axis=-1, keepdims=True) for x in (features["onnx"][name], expected))
        assert np.abs(got - want).max() < 1e-4, name
    assert len(list((tmp_path / "onnx" / "onnx").glob("features-*.onnx"))) == 1  # one backbone for train and val
    assert not (tmp_path / "torch" / "onnx").exists()
