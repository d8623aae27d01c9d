"""Training objective: ArcFace or softmax head, plus an optional batch-hard triplet term."""

from __future__ import annotations

import math

import torch
from pytorch_metric_learning import losses, miners
from torch import nn

from ..config import Config


class ReIDCriterion(nn.Module):
    """loss = classification (ArcFace margin logits, or linear softmax) + w x batch-hard triplet.

    ArcFace is pytorch-metric-learning's ``ArcFaceLoss`` (it owns the class-centre weights; its
    margin is in degrees, so the seed's 0.5 rad is converted). Computed in float32.
    """

    def __init__(self, cfg: Config, num_classes: int, embedding_dim: int):
        super().__init__()
        if cfg.model.head == "arcface":
            self.arcface = losses.ArcFaceLoss(
                num_classes, embedding_dim, margin=math.degrees(cfg.model.arcface_margin), scale=cfg.model.arcface_scale
            )
            # Label smoothing on the margin logits: pytorch-metric-learning computes ArcFace's
            # cross-entropy with this attribute, so a smoothed one implements it exactly.
            self.arcface.cross_entropy = nn.CrossEntropyLoss(reduction="none", label_smoothing=cfg.loss.label_smoothing)
            self.classifier = None
        else:
            self.arcface = None
            self.classifier = nn.Linear(embedding_dim, num_classes)
            self.cross_entropy = nn.CrossEntropyLoss(label_smoothing=cfg.loss.label_smoothing)
        self.triplet_weight = cfg.loss.triplet_weight
        if self.triplet_weight > 0:
            self.triplet = losses.TripletMarginLoss(margin=cfg.loss.triplet_margin)
            self.miner = miners.BatchHardMiner()

    @torch.no_grad()
    def imprint(self, class_means: torch.Tensor) -> None:
        """Start the class weights at the L2-normalised class-mean embeddings (weight imprinting).

        A random head gives the backbone near-random gradients for the first epochs; imprinted
        centres make the first steps already pull each image towards its own animal.
        """
        centres = torch.nn.functional.normalize(class_means.float(), dim=1)
        if self.arcface is not None:
            self.arcface.W.copy_(centres.T)
        else:
            self.classifier.weight.copy_(centres)
            self.classifier.bias.zero_()

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss and its detached parts (tensors: reading them would sync the GPU every step)."""
        embeddings = embeddings.float()
        if self.arcface is not None:
            classification = self.arcface(embeddings, labels)
        else:
            classification = self.cross_entropy(self.classifier(embeddings), labels)
        parts = {"classification": classification.detach()}
        loss = classification
        if self.triplet_weight > 0:
            triplet = self.triplet(embeddings, labels, self.miner(embeddings, labels))
            parts["triplet"] = triplet.detach()
            loss = loss + self.triplet_weight * triplet
        return loss, parts
