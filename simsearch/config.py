"""Configuration as data: the network's settings (saved with the weights and with every index)
and a training run's settings (saved beside its checkpoint), each with its defaults in one place.

Nothing here imports torch: the `simsearch train` command reads its defaults and choices from
`TrainConfig` even where torch is not installed (it then says what to install).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from simsearch.errors import ModelError, TrainingError

__all__ = ["BACKBONES", "POOLINGS", "DATA_KINDS", "LOSSES", "MINER_STRATEGIES", "BF16_MODES",
           "VIEW_RECIPE_NAMES",
           "ModelConfig", "TrainConfig"]

BACKBONES = ("resnet18", "resnet34", "resnet50")
POOLINGS = ("gem", "avg")
DATA_KINDS = ("unlabeled", "classes", "pairs")
LOSSES = ("triplet", "infonce")
MINER_STRATEGIES = ("semihard", "hard", "all")
BF16_MODES = ("auto", "on", "off")
# simsearch.edits.VIEW_RECIPES (PIL stays out of here)
VIEW_RECIPE_NAMES = ("copy", "copy-heavy", "copy-heavy-lowres", "copy-heavy-lowres-lineart",
                     "copy-heavy-lowres-frames", "copy-heavy-lowres-frames-half")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network and feed it: architecture and preprocessing.

    Images are resized (squashed, not cropped) to `input_size` x `input_size`, so nothing at the
    edges of a picture is thrown away before it is compared.
    """

    backbone: str = "resnet18"
    dim: int = 256
    input_size: int = 160
    pooling: str = "gem"
    gem_p: float = 3.0
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ModelError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(BACKBONES)}")
        if self.pooling not in POOLINGS:
            raise ModelError(f"unknown pooling {self.pooling!r}; choose one of {', '.join(POOLINGS)}")
        if not 8 <= self.dim <= 4096:
            raise ModelError(f"embedding dim {self.dim} is outside 8..4096")
        if not 32 <= self.input_size <= 1024:
            raise ModelError(f"input size {self.input_size} is outside 32..1024")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ModelError(f"model config has unknown keys: {', '.join(sorted(unknown))}")
        try:
            return cls(**data)
        except TypeError as e:
            raise ModelError(f"malformed model config: {e}") from e

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ModelError(f"model config is not valid JSON: {e}") from e
        if not isinstance(data, dict):
            raise ModelError("model config must be a JSON object")
        return cls.from_dict(data)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; saved beside the checkpoint.

    The defaults are the built-in recipe: self-supervised training on unlabeled images (each
    seen as two random copy-style edits), ResNet-18 at 160 px, 256-d GeM embeddings, triplet
    loss with semi-hard mining (margin 0.25 in cosine distance) plus SSCD's KoLeo spreading
    term, batches of 64 images (128 views; more where a view recipe frames look-alikes), AdamW
    at lr 1e-3 with warm-up and cosine decay, bf16 autocast where the hardware runs it fast.
    `simsearch train` takes its defaults from here.
    """

    data: str = "unlabeled"          # "unlabeled" | "classes" | "pairs"
    data_dir: str = ""               # the images / class subfolders / left side of the pairs
    right_dir: str = ""              # pairs only: the right side, matched by file name
    val_dir: str = ""                # validation images; empty: hold out val_fraction of labels
    val_fraction: float = 0.05
    val_max: int = 1000
    out_dir: str = "runs/train"
    epochs: int = 10
    steps_per_epoch: int = 0         # 0: one full pass over the data
    batch_size: int = 64             # images (unlabeled) or pairs -> 128 views (more with -frames)
    samples_per_class: int = 2       # K, class folders only (unlabeled and pairs give 2 views)
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 300          # capped at a quarter of the run
    loss: str = "triplet"            # "triplet" | "infonce"
    miner: str = "semihard"          # "semihard" | "hard" | "all"
    margin: float = 0.25             # in cosine distance (1 - cos)
    temperature: float = 0.07        # infonce only
    koleo_weight: float = 0.5        # 0 turns the spreading term off
    views: str = "copy"              # unlabeled data: the edit recipe of the two views
    memory: int = 0                  # cross-batch memory of recent embeddings mined for
                                     # negatives (0: off; triplet loss only)
    memory_weight: float = 1.0       # weight of the memory triplet term
    negative_ceiling: float = 0.0    # cosine that pictures of other labels (batch and memory)
                                     # are held under, whatever their positives (0: off)
    ceiling_weight: float = 1.0      # weight of that term
    positive_floor: float = 0.0      # cosine that pictures of one label (views of an image)
                                     # are lifted over (0: off)
    floor_weight: float = 1.0        # weight of that term
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
            (self.data in DATA_KINDS,
             f"data must be unlabeled, classes or pairs, got {self.data!r}"),
            (bool(self.data_dir), "data_dir (the training images) is required"),
            (self.data != "pairs" or bool(self.right_dir), "pairs data needs right_dir"),
            (self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}"),
            (self.miner in MINER_STRATEGIES, f"miner must be one of {', '.join(MINER_STRATEGIES)}"),
            (self.bf16 in BF16_MODES, f"bf16 must be auto, on or off, got {self.bf16!r}"),
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
            (self.views in VIEW_RECIPE_NAMES,
             f"views must be one of {', '.join(VIEW_RECIPE_NAMES)}, got {self.views!r}"),
            (self.memory >= 0 and self.memory_weight >= 0, "memory and memory_weight must be >= 0"),
            (self.memory == 0 or self.loss == "triplet", "the memory mines triplets: use loss triplet"),
            (self.memory > 0 or self.memory_weight == 1.0,
             "memory_weight weighs the memory's triplet term, which is off: set memory"),
            (0.0 <= self.negative_ceiling < 1.0 and self.ceiling_weight >= 0,
             f"negative_ceiling must be in [0, 1) (0: off) and ceiling_weight >= 0, got "
             f"{self.negative_ceiling} and {self.ceiling_weight}"),
            (self.negative_ceiling > 0 or self.ceiling_weight == 1.0,
             "ceiling_weight weighs the negative_ceiling term, which is off: set negative_ceiling"),
            (0.0 <= self.positive_floor < 1.0 and self.floor_weight >= 0,
             f"positive_floor must be in [0, 1) (0: off) and floor_weight >= 0, got "
             f"{self.positive_floor} and {self.floor_weight}"),
            (self.positive_floor > 0 or self.floor_weight == 1.0,
             "floor_weight weighs the positive_floor term, which is off: set positive_floor"),
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
