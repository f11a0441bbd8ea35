"""Configuration as data: the network's settings, saved with the weights and with every index."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from simsearch.errors import ModelError

__all__ = ["BACKBONES", "POOLINGS", "ModelConfig"]

BACKBONES = ("resnet18", "resnet34", "resnet50")
POOLINGS = ("gem", "avg")


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
