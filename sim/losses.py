"""Loss composition (as DLE-SIM's models): classification BCE (+ SIM's stage-one head) + DIEN aux loss.

The auxiliary loss itself is computed inside the models (sim.models.dien.AuxiliaryNet), which return it
in SimOutput; this module combines the parts the way the reference does:
  din:  total = BCE(logit)
  dien: total = BCE(logit) + aux
  sim:  total = 0.5 * (BCE(stage-one logit) + BCE(stage-two logit)) + aux   (alpha = beta = 1)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from sim.models import SimOutput


@dataclass
class Losses:
    """Scalars: the reference's logged names classification_loss, dien_aux_loss, total_loss."""

    classification: Tensor
    aux: Tensor
    total: Tensor


def classification_per_sample(out: SimOutput, labels: Tensor) -> Tensor:
    """[B] fp32 classification loss of each sample (SIM: the mean of its two heads' BCEs)."""
    loss = F.binary_cross_entropy_with_logits(out.logits.float(), labels, reduction="none")
    if out.stage_one_logits is not None:
        stage_one = F.binary_cross_entropy_with_logits(out.stage_one_logits.float(), labels, reduction="none")
        loss = 0.5 * (stage_one + loss)
    return loss


def training_losses(out: SimOutput, labels: Tensor) -> Losses:
    """Batch means; the aux loss is 0 for DIN (and when the batch carries no negatives)."""
    classification = classification_per_sample(out, labels).mean()
    aux = out.aux_loss.float() if out.aux_loss is not None else torch.zeros_like(classification)
    return Losses(classification, aux, classification + aux)
