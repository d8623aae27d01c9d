"""Backbones, offline weights, pooling, freezing and every preset."""

import numpy as np
import pytest
import torch
from skimage import data as skimage_data

from jaguar_reid.config import ModelConfig, load_config, preset_names
from jaguar_reid.models import GeM, WeightsError, create_backbone, create_reid_model, lukemelas_to_timm
from jaguar_reid.models.weights import offline_state_dict


def _chelsea(size=224):
    image = torch.tensor(skimage_data.chelsea()).permute(2, 0, 1).float().div(255)[None]
    return torch.nn.functional.interpolate(image, size=(size, size), mode="bilinear", antialias=True)


def test_offline_lite0_weights_classify_a_cat():
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(offline_state_dict("tf_efficientnet_lite0", [len(s) for s in model.blocks]), strict=True)
    model.eval()
    with torch.no_grad():
        probabilities = model((_chelsea() - 0.5) / 0.5).softmax(-1)[0]
    top = int(probabilities.argmax())
    assert 281 <= top <= 285, f"ImageNet class {top} is not a domestic cat"  # tabby .. Egyptian cat
    assert probabilities[281:286].sum() > 0.5


def test_offline_backbone_is_the_pretrained_one():
    a = create_backbone(ModelConfig(pretrained="offline"))
    b = create_backbone(ModelConfig(pretrained="offline"))
    c = create_backbone(ModelConfig(pretrained="none"))
    assert torch.equal(a.conv_stem.weight, b.conv_stem.weight)
    assert not torch.equal(a.conv_stem.weight, c.conv_stem.weight)


def test_key_remap_handles_blocks_with_and_without_expansion():
    state = {"_conv_stem.weight": 1, "_blocks.0._depthwise_conv.weight": 2, "_blocks.0._project_conv.weight": 3,
             "_blocks.1._expand_conv.weight": 4, "_blocks.1._bn2.bias": 5, "_blocks.2._bn0.weight": 6,
             "_blocks.2._expand_conv.weight": 7, "_fc.bias": 8}
    renamed = lukemelas_to_timm(state, [1, 2])
    assert renamed == {"conv_stem.weight": 1, "blocks.0.0.conv_dw.weight": 2, "blocks.0.0.conv_pw.weight": 3,
                       "blocks.1.0.conv_pw.weight": 4, "blocks.1.0.bn3.bias": 5, "blocks.1.1.bn1.weight": 6,
                       "blocks.1.1.conv_pw.weight": 7, "classifier.bias": 8}


def test_no_offline_weights_is_a_clear_error_not_random_weights():
    with pytest.raises(WeightsError, match="no weights for 'resnet18'.*--weights PATH.*model.pretrained=none"):
        create_backbone(ModelConfig(backbone="resnet18", pretrained="offline"))


def test_hub_unreachable_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="no weights for 'resnet18'"):
        create_backbone(ModelConfig(backbone="resnet18", pretrained="hub"))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_file(tmp_path, suffix):
    from safetensors.torch import save_file

    source = create_backbone(ModelConfig(backbone="resnet18", pretrained="none"))
    path = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    loaded = create_backbone(ModelConfig(backbone="resnet18", pretrained="hub"), weights=path)
    assert torch.equal(loaded.conv1.weight, source.conv1.weight)
    with pytest.raises(WeightsError, match="weights file not found"):
        create_backbone(ModelConfig(backbone="resnet18"), weights=tmp_path / "missing.pth")


def test_gem_interpolates_between_mean_and_max():
    x = torch.rand(2, 3, 4, 4) + 0.1
    assert torch.allclose(GeM(1.0)(x, (2, 3)), x.mean(dim=(2, 3)), atol=1e-6)
    high = GeM(80.0)(x, (2, 3))
    assert torch.allclose(high, x.amax(dim=(2, 3)), atol=0.05)
    assert GeM(3.0).p.requires_grad


def test_model_shapes_neck_and_vit_tokens():
    cnn = create_reid_model(ModelConfig(backbone="resnet18", pretrained="none", embedding_dim=64))
    assert cnn(torch.rand(2, 3, 64, 64)).shape == (2, 64)
    vit = create_reid_model(ModelConfig(backbone="eva02_tiny_patch14_224", pretrained="none"))
    assert vit.num_prefix_tokens == 1
    assert vit(torch.rand(2, 3, 224, 224)).shape == (2, vit.embedding_dim)


@pytest.mark.slow
def test_freezing_leading_stages_freezes_upstream_only_and_keeps_bn_stats():
    model = create_reid_model(ModelConfig(backbone="resnet18", pretrained="none", freeze_stages=2))
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert {"backbone.conv1.weight", "backbone.bn1.weight", "backbone.layer1.0.conv1.weight"} <= frozen
    assert not any(n.startswith("backbone.layer2") for n in frozen)
    model.train()
    assert not model.backbone.bn1.training and model.backbone.layer2[0].bn1.training
    before = model.backbone.bn1.running_mean.clone()
    model(torch.rand(4, 3, 64, 64))
    assert torch.equal(before, model.backbone.bn1.running_mean)


# The large transformers have their own tests (eva02 below, MegaDescriptor and DINOv2 in test_presets.py).
@pytest.mark.parametrize("name", [n for n in preset_names() if n not in ("eva02-large-448", "megadescriptor-l-384", "dinov2-base")])
def test_every_preset_builds_with_random_weights(name):
    cfg = load_config(name, ["model.pretrained=none"])
    model = create_reid_model(cfg.model).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64) if "eva" not in name else torch.rand(1, 3, cfg.data.image_size, cfg.data.image_size))
    assert out.shape[1] == model.embedding_dim and np.isfinite(out.numpy()).all()


@pytest.mark.slow
def test_eva02_large_preset_builds():
    cfg = load_config("eva02-large-448", ["model.pretrained=none"])
    model = create_reid_model(cfg.model).eval()
    assert model.embedding_dim == 1024
    assert 300e6 < sum(p.numel() for p in model.parameters()) < 310e6
    with torch.no_grad():
        assert model(torch.rand(1, 3, 448, 448)).shape == (1, 1024)
