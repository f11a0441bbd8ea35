"""Training configuration as data: every setting of a run, with its defaults in one place.

The defaults are the built-in recipe: self-supervised training on unlabeled images (each seen
as two random copy-style edits), ResNet-18 at 160 px, 256-d GeM embeddings, triplet loss with
semi-hard mining (margin 0.25 in cosine distance) plus SSCD's KoLeo spreading term, batches of
64 images (128 views), AdamW at lr 1e-3 with warm-up and cosine decay, bf16 autocast where the
hardware runs it fast.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from simsearch.config import ModelConfig
from simsearch.errors import ModelError
from simsearch.train import TrainingError
from simsearch.train.miners import MINER_STRATEGIES

__all__ = ["TrainConfig", "choose_device", "bf16_supported"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; saved beside the checkpoint."""

    data: str = "unlabeled"          # "unlabeled" | "classes" | "pairs"
    data_dir: str = ""               # the images / class subfolders / left side of the pairs
    right_dir: str = ""              # pairs only: the right side, matched by file name
    val_dir: str = ""                # validation images; empty: hold out val_fraction of labels
    val_fraction: float = 0.05
    val_max: int = 1000
    out_dir: str = "runs/train"
    epochs: int = 10
    steps_per_epoch: int = 0         # 0: one full pass over the data
    batch_size: int = 64             # labels per batch: images (unlabeled) or pairs -> 128 views
    samples_per_class: int = 2       # K, class folders only (unlabeled and pairs give 2 views)
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 300          # capped at a quarter of the run
    loss: str = "triplet"            # "triplet" | "infonce"
    miner: str = "semihard"          # "semihard" | "hard" | "all"
    margin: float = 0.25             # in cosine distance (1 - cos)
    temperature: float = 0.07        # infonce only
    koleo_weight: float = 0.5        # 0 turns the spreading term off
    backbone: str = "resnet18"
    dim: int = 256
    input_size: int = 160
    pooling: str = "gem"
    freeze: int = 0                  # freeze the first N of (stem, layer1, layer2, layer3): 0..4
    init: str = "random"             # "random" | "imagenet" | "imagenet:PATH" | a model file
    cache_px: int = 256              # long side of the decoded copies kept in RAM
    augment: bool = True             # light augmentation for class / pairs data
    seed: int = 0
    workers: int = 1                 # threads building the next batches (0: in the loop)
    device: str = "auto"             # "auto" | "cpu" | "cuda" | "cuda:N"
    bf16: str = "auto"               # "auto" | "on" | "off": bf16 autocast
    channels_last: bool = True
    threads: int = 0                 # torch intra-op threads; 0: torch's default
    checkpoint_every: int = 0        # steps; 0: at epoch ends only
    resume: bool = False
    patience: int = 50               # steps of zero loss / collapse before it is reported
    stop_on_collapse: bool = False

    def __post_init__(self):
        checks = [
            (self.data in ("unlabeled", "classes", "pairs"),
             f"data must be unlabeled, classes or pairs, got {self.data!r}"),
            (bool(self.data_dir), "data_dir (the training images) is required"),
            (self.data != "pairs" or bool(self.right_dir), "pairs data needs right_dir"),
            (self.loss in ("triplet", "infonce"), f"loss must be triplet or infonce, got {self.loss!r}"),
            (self.miner in MINER_STRATEGIES, f"miner must be one of {', '.join(MINER_STRATEGIES)}"),
            (self.bf16 in ("auto", "on", "off"), f"bf16 must be auto, on or off, got {self.bf16!r}"),
            (0 <= self.freeze <= 4, f"freeze must be 0..4, got {self.freeze}"),
            (self.epochs >= 1 and self.batch_size >= 2, "need epochs >= 1 and batch_size >= 2"),
            (self.samples_per_class >= 2, "samples_per_class must be at least 2"),
            (0 <= self.val_fraction < 1, f"val_fraction must be in [0, 1), got {self.val_fraction}"),
            (self.lr > 0 and self.weight_decay >= 0, "lr must be positive, weight_decay >= 0"),
            (0 < self.margin < 2, f"margin {self.margin} is outside (0, 2), the range of 1 - cos"),
            (self.temperature > 0 and self.koleo_weight >= 0, "need temperature > 0, koleo_weight >= 0"),
            (self.workers >= 0 and self.threads >= 0 and self.patience >= 1,
             "workers and threads must be >= 0, patience >= 1"),
            (self.cache_px >= 32, f"cache_px {self.cache_px} is below 32"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainingError(message)
        try:
            self.model_config()
        except ModelError as e:
            raise TrainingError(str(e)) from None

    def model_config(self) -> ModelConfig:
        return ModelConfig(backbone=self.backbone, dim=self.dim, input_size=self.input_size,
                           pooling=self.pooling)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def choose_device(name: str) -> torch.device:
    """"auto" is CUDA when torch sees a GPU, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TrainingError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"device {name!r} asked for, but torch sees no CUDA device; "
                            "use --device cpu")
    return device


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast runs at speed here: CUDA with bf16, or a CPU with AVX512-BF16/AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)
