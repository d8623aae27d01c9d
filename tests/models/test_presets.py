"""The field's strong backbones for users who are online: MegaDescriptor-L-384 and DINOv2-base.

Hubs are unreachable in tests: each preset is built with the same architecture at random init at
a small input size, loaded from a local weights file (as a field laptop would after one
download), trained through both stages, and its hub request is checked for the right repo.
"""

import pytest
import torch
from safetensors.torch import save_file

from jaguar_reid.config import load_config
from jaguar_reid.data.synthetic import make_demo_data
from jaguar_reid.models import WeightsError, create_backbone, create_reid_model
from jaguar_reid.training.trainer import train

# (preset, a small input size the architecture takes, embedding width)
PRESETS = [("megadescriptor-l-384", 96, 1536), ("dinov2-base", 56, 768)]


@pytest.mark.slow
@pytest.mark.parametrize("name, size, width", PRESETS)
def test_preset_builds_at_random_init_and_loads_a_local_weights_file(name, size, width, tmp_path):
    cfg = load_config(name, ["model.pretrained=none", f"data.image_size={size}"])
    model = create_reid_model(cfg.model, image_size=size).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, size, size))
    assert out.shape == (2, width) and torch.isfinite(out).all()
    # A weights file (e.g. the hub's, downloaded once) loads exactly.
    file = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in model.backbone.state_dict().items()}, str(file))
    loaded = create_backbone(cfg.model.model_copy(update={"pretrained": "hub", "weights": str(file)}), image_size=size)
    reference = model.backbone.state_dict()
    assert all(torch.equal(reference[k], v) for k, v in loaded.state_dict().items())


def test_megadescriptor_preset_names_its_repo_and_the_model_cards_normalisation():
    cfg = load_config("megadescriptor-l-384", ["model.pretrained=none"])
    assert cfg.model.hub_id == "BVRA/MegaDescriptor-L-384" and cfg.model.backbone == "swin_large_patch4_window12_384"
    assert cfg.model.mean == (0.5, 0.5, 0.5) and cfg.model.std == (0.5, 0.5, 0.5)


def test_hub_preset_asks_timm_for_its_own_repo(monkeypatch):
    import timm

    calls = {}

    def fake_create_model(name, pretrained=False, **kwargs):
        calls.update(name=name, pretrained=pretrained, **kwargs)
        raise RuntimeError("offline")

    monkeypatch.setattr(timm, "create_model", fake_create_model)
    cfg = load_config("megadescriptor-l-384")
    with pytest.raises(WeightsError, match="--weights"):
        create_backbone(cfg.model, image_size=384)
    assert calls["name"] == "swin_large_patch4_window12_384" and calls["pretrained"] is True
    assert calls["pretrained_cfg_overlay"] == {"hf_hub_id": "BVRA/MegaDescriptor-L-384", "source": "hf-hub"}
    calls.clear()
    with pytest.raises(WeightsError):
        create_backbone(load_config("dinov2-base").model, image_size=336)
    assert calls["name"] == "vit_base_patch14_dinov2.lvd142m" and calls["pretrained_cfg_overlay"] is None


def test_swin_feature_maps_are_pooled_over_height_and_width_after_the_presets_normalisation():
    cfg = load_config("megadescriptor-l-384", ["model.pretrained=none"]).model
    tiny = cfg.model_copy(update={"backbone": "swin_tiny_patch4_window7_224"})
    model = create_reid_model(tiny, image_size=56).eval()
    assert model.spatial_dims == (1, 2)
    assert model.mean.flatten().tolist() == [0.5] * 3 and model.std.flatten().tolist() == [0.5] * 3
    images = torch.rand(1, 3, 56, 56)
    with torch.no_grad():
        features = model.backbone.forward_features((images - 0.5) / 0.5)  # (N, H, W, C)
        assert torch.allclose(model.pooled(images), features.mean(dim=(1, 2)), atol=1e-5)


# The same families, small: a full-size preset's checkpoints (a Swin-L stage writes about 2.5 GB)
# would fill a CI disk; its exact architecture is built above.
SMALL_SIBLINGS = [("dinov2-base", "vit_small_patch14_dinov2", 56, 10), ("megadescriptor-l-384", "swin_tiny_patch4_window7_224", 56, 3)]


@pytest.mark.slow
@pytest.mark.parametrize("name, backbone, size, freeze", SMALL_SIBLINGS)
def test_preset_trains_head_only_then_fine_tunes(name, backbone, size, freeze, tmp_path):
    root = make_demo_data(tmp_path / "data", identities=4, scale=0.2, seed=2)
    cfg = load_config(name, ["model.pretrained=none", f"model.backbone={backbone}", f"data.image_size={size}", "train.epochs=1", "train.feature_views=1",
                             "data.num_workers=0", "train.batch_size=8", "train.eval_batch_size=8", "finetune.mode=always",
                             "finetune.epochs=1", "finetune.batch_size=8", "finetune.sampler=pk", f"finetune.freeze_stages={freeze}",
                             "train.feature_backend=torch"])
    summary = train(cfg, root, tmp_path / "run")
    assert set(summary["stages"]) == {"head", "finetune"}
    assert summary["stage"] in ("head", "finetune") and "finetune.mode = always" in summary["choice"]
    from jaguar_reid.runs import Run

    assert Run(tmp_path / "run").weights("best").exists()
