"""The torch.compile path of the training step gives the eager step's loss and gradients (CPU)."""

import pytest
import torch

from jaguar_reid.config import load_config
from jaguar_reid.models import create_reid_model
from jaguar_reid.training.losses import ReIDCriterion
from jaguar_reid.training.session import TrainStep


def _step(cfg):
    torch.manual_seed(0)
    model = create_reid_model(cfg.model, image_size=cfg.data.image_size)
    criterion = ReIDCriterion(cfg, 5, model.embedding_dim)
    return TrainStep(model, criterion, torch.device("cpu"), "fp32")


@pytest.mark.slow
def test_compiled_step_matches_eager():
    cfg = load_config("resnet50-baseline", ["model.backbone=resnet18", "model.pretrained=none", "model.embedding_dim=16",
                                            "data.image_size=32"])
    eager, compiled = _step(cfg), _step(cfg)
    compiled_forward = torch.compile(compiled)
    images = torch.rand(8, 3, 32, 32)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 4])
    loss_eager, parts_eager = eager(images, labels)
    loss_compiled, parts_compiled = compiled_forward(images, labels)
    assert set(parts_eager) == set(parts_compiled) == {"classification", "triplet"}
    assert torch.allclose(loss_eager, loss_compiled, rtol=1e-4, atol=1e-5)
    loss_eager.backward()
    loss_compiled.backward()
    for (name, a), (_, b) in zip(eager.named_parameters(), compiled.named_parameters()):
        if a.grad is not None:
            assert torch.allclose(a.grad, b.grad, rtol=1e-3, atol=1e-5), name
