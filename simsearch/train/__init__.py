"""Training the embedding network: samplers, miners, losses, datasets and the trainer.

torch is imported by the modules of this package (and `simsearch.model`) only. The pieces are
small and separate, pytorch-metric-learning style: a sampler builds P x K batches, a miner picks
triplets from a batch's embeddings, a loss scores them, and `train()` wires them together.
"""
from __future__ import annotations

from simsearch.errors import SimsearchError


class TrainingError(SimsearchError):
    """A training run cannot start or cannot go on: bad data, no triplets, collapse, bad resume."""


# Defined before the submodules are imported: they import it from here.
from simsearch.train.samplers import ItemSampler, PKSampler, SamplerSummary  # noqa: E402
from simsearch.train.miners import (  # noqa: E402
    MINER_STRATEGIES, NoTripletsError, Triplets, cosine_distances, mine_triplets)
from simsearch.train.losses import (  # noqa: E402
    BatchStats, InfoNCELoss, KoLeoLoss, LossResult, TrainingMonitor, TripletMarginLoss, batch_stats)
from simsearch.train.datasets import (  # noqa: E402
    RESERVED_NAMES, ClassFolderDataset, PairsDataset, Skipped, UnlabeledDataset, to_batch_tensor)
from simsearch.train.config import TrainConfig, bf16_supported, choose_device  # noqa: E402
from simsearch.train.trainer import (  # noqa: E402
    CHECKPOINT, CollapseError, EpochMetrics, TrainEvent, TrainResult, lr_at, train)

__all__ = [
    "TrainingError", "NoTripletsError", "CollapseError",
    "PKSampler", "ItemSampler", "SamplerSummary",
    "MINER_STRATEGIES", "Triplets", "cosine_distances", "mine_triplets",
    "TripletMarginLoss", "InfoNCELoss", "KoLeoLoss", "LossResult", "BatchStats", "batch_stats",
    "TrainingMonitor",
    "RESERVED_NAMES", "ClassFolderDataset", "PairsDataset", "UnlabeledDataset", "Skipped",
    "to_batch_tensor",
    "TrainConfig", "choose_device", "bf16_supported",
    "CHECKPOINT", "TrainEvent", "TrainResult", "EpochMetrics", "lr_at", "train",
]
