"""Where a training run computes: the device and whether bf16 autocast runs at speed there.

`TrainConfig` (every setting of a run, defaults included) lives in `simsearch.config`, which
needs no torch; it is re-exported here for the older import path.
"""
from __future__ import annotations

import torch

from simsearch.config import TrainConfig
from simsearch.errors import TrainingError

__all__ = ["TrainConfig", "choose_device", "bf16_supported"]


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
