"""Training the embedding network: samplers, miners, losses, datasets and the trainer.

The pieces are small and separate, pytorch-metric-learning style: a sampler builds P x K
batches, a miner picks triplets from a batch's embeddings, a loss scores them, and `train()`
wires them together.

torch is imported by the modules of this package (and `simsearch.model`, `simsearch.export`)
only. Without torch (the light install) importing this package raises `MissingDependencyError`,
which says what to install.
"""
from __future__ import annotations

from simsearch.config import TrainConfig
from simsearch.errors import CollapseError, MissingDependencyError, NoTripletsError, TrainingError

try:
    import torch  # noqa: F401
    import torchvision  # noqa: F401
except ImportError as e:  # the light install: say what to install, not a traceback
    raise MissingDependencyError("training", e.name or "torch and torchvision") from None

from simsearch.train.samplers import ItemSampler, PKSampler, SamplerSummary  # noqa: E402
from simsearch.train.miners import (  # noqa: E402
    MINER_STRATEGIES, Triplets, cosine_distances, mine_triplets)
from simsearch.train.losses import (  # noqa: E402
    BatchStats, InfoNCELoss, KoLeoLoss, LossResult, TrainingMonitor, TripletMarginLoss, batch_stats)
from simsearch.train.datasets import (  # noqa: E402
    ClassFolderDataset, PairsDataset, Skipped, UnlabeledDataset, to_batch_tensor)
from simsearch.train.config import bf16_supported, choose_device  # noqa: E402
from simsearch.train.trainer import (  # noqa: E402
    CHECKPOINT, EpochMetrics, TrainEvent, TrainResult, lr_at, train)

__all__ = [
    "TrainingError", "NoTripletsError", "CollapseError",
    "PKSampler", "ItemSampler", "SamplerSummary",
    "MINER_STRATEGIES", "Triplets", "cosine_distances", "mine_triplets",
    "TripletMarginLoss", "InfoNCELoss", "KoLeoLoss", "LossResult", "BatchStats", "batch_stats",
    "TrainingMonitor",
    "ClassFolderDataset", "PairsDataset", "UnlabeledDataset", "Skipped",
    "to_batch_tensor",
    "TrainConfig", "choose_device", "bf16_supported",
    "CHECKPOINT", "TrainEvent", "TrainResult", "EpochMetrics", "lr_at", "train",
]
