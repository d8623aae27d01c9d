"""The training objective and its parameter groups."""

import torch

from jaguar_reid.config import load_config
from jaguar_reid.models import create_reid_model
from jaguar_reid.training.losses import ReIDCriterion
from jaguar_reid.training.optim import parameter_groups


def test_label_smoothing_applies_to_arcface_margin_logits():
    torch.manual_seed(0)
    embeddings, labels = torch.randn(16, 8), torch.randint(0, 4, (16,))
    losses = {}
    for smoothing in (0.0, 0.1):
        cfg = load_config("eva02-large-448", [f"loss.label_smoothing={smoothing}"])
        criterion = ReIDCriterion(cfg, 4, 8)
        torch.manual_seed(1)
        criterion.arcface.W.data = torch.randn_like(criterion.arcface.W)
        losses[smoothing] = criterion(embeddings, labels)[0].item()
    assert losses[0.0] != losses[0.1]


def test_no_weight_decay_on_norms_biases_gem_or_arcface_centres():
    cfg = load_config("lite0-finetune", ["model.pretrained=none", "model.embedding_dim=16"])
    model = create_reid_model(cfg.model)
    criterion = ReIDCriterion(cfg, 5, model.embedding_dim)
    groups = parameter_groups(cfg, model, criterion)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(criterion.arcface.W) not in decayed and id(model.pool.p) not in decayed
    assert id(model.neck[0].weight) in decayed and id(model.neck[1].weight) not in decayed
    assert all(p.ndim > 1 for g in groups if g["weight_decay"] > 0 for p in g["params"])
    head_lr = {g["lr"] for g in groups if any(p is criterion.arcface.W for p in g["params"])}
    assert head_lr == {cfg.optimizer.lr * cfg.optimizer.head_lr_multiplier}
    frozen = {id(p) for p in model.parameters() if not p.requires_grad}
    assert not frozen & {id(p) for g in groups for p in g["params"]}
