"""The embedding network: a torchvision ResNet trunk, a pooling head, a linear projection and
L2 normalisation inside the network, so every output is a unit vector and every comparison a
cosine score.

This is one of the few modules that imports torch; run-time inference goes through the ONNX
export (`export.py`, `embedder.py`) so that `simsearch query` never pays for importing torch.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from simsearch.config import BACKBONES, ModelConfig
from simsearch.errors import MissingDependencyError, ModelError
from simsearch.files import sha256

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as e:  # the light install has no torch
    raise MissingDependencyError("training and model export", e.name or "torch") from None

__all__ = ["EmbeddingNet", "GeM", "create_model", "save_model", "load_model", "load_imagenet_trunk"]

_TRUNK_WIDTH = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}


class GeM(nn.Module):
    """Generalised-mean pooling (Radenovic et al.): p=1 is average pooling, large p tends to max."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p.clamp(min=1.0)
        return x.clamp(min=self.eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


class EmbeddingNet(nn.Module):
    """ResNet trunk -> pooling -> linear projection -> L2 normalisation."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        import torchvision  # heavy; only needed when building the network

        self.config = config
        resnet = getattr(torchvision.models, config.backbone)(weights=None)
        self.trunk = nn.Sequential(
            resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool,
            resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4,
        )
        self.pool = GeM(config.gem_p) if config.pooling == "gem" else nn.AdaptiveAvgPool2d(1)
        self.proj = nn.Linear(_TRUNK_WIDTH[config.backbone], config.dim)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's feature map, before pooling."""
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(self.forward_features(x)).flatten(1)
        return F.normalize(self.proj(pooled).float(), dim=1)


def create_model(config: ModelConfig | None = None, seed: int = 0) -> EmbeddingNet:
    """A randomly initialised network; the seed makes it reproducible."""
    config = config or ModelConfig()
    if config.backbone not in BACKBONES:
        raise ModelError(f"unknown backbone {config.backbone!r}; choose one of {', '.join(BACKBONES)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = EmbeddingNet(config)
    return model.eval()


def save_model(model: EmbeddingNet, path: str | os.PathLike, half: bool = True) -> str:
    """Write the weights as safetensors with the config in its metadata (plus a JSON sidecar).

    Returns the SHA-256 of the written weights file, the model's identity in index manifests.
    fp16 storage halves the file; loading casts back to fp32.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        if half and tensor.is_floating_point() and name != "pool.p":
            tensor = tensor.half()
        tensors[name] = tensor
    meta = {"simsearch_config": model.config.to_json()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    sidecar = path.with_suffix(".json")
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    tmp.write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
    os.replace(tmp, sidecar)
    return sha256(path)


def read_config(path: str | os.PathLike) -> ModelConfig:
    """The config stored in a safetensors model file, without loading the weights."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises several types for a malformed header
        raise ModelError(f"{path}: not a simsearch model file ({e})") from e
    if "simsearch_config" not in meta:
        raise ModelError(f"{path}: safetensors file has no simsearch config in its metadata")
    return ModelConfig.from_json(meta["simsearch_config"])


def load_model(path: str | os.PathLike) -> EmbeddingNet:
    """Load a model saved by `save_model`. Never executes code from the file (safetensors)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    config = read_config(path)
    model = EmbeddingNet(config)
    try:
        state = load_file(str(path))
    except Exception as e:
        raise ModelError(f"{path}: cannot read weights ({e})") from e
    state = {k: v.float() for k, v in state.items()}
    wanted = model.state_dict()
    missing = [k for k in wanted if k not in state]
    unexpected = [k for k in state if k not in wanted]
    if missing or unexpected:
        raise ModelError(f"{path}: weights do not fit a {config.backbone} network "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, tensor in state.items():
        if tensor.shape != wanted[name].shape:
            raise ModelError(f"{path}: tensor {name} has shape {list(tensor.shape)}, the config "
                             f"in the file ({config.backbone}, dim {config.dim}) needs "
                             f"{list(wanted[name].shape)}; the file is damaged or mislabelled")
    model.load_state_dict(state)
    return model.eval()


def load_imagenet_trunk(model: EmbeddingNet, source: str | os.PathLike | None = None) -> EmbeddingNet:
    """Copy torchvision ImageNet weights into the trunk.

    `source` is a state-dict file (`torch.load(weights_only=True)`-safe); without it the file is
    looked up in torchvision's cache (`$TORCH_HOME/hub/checkpoints`). Nothing is downloaded.
    """
    import torchvision

    if source is None:
        weights = torchvision.models.get_model_weights(model.config.backbone).DEFAULT
        filename = weights.url.rsplit("/", 1)[-1]
        source = Path(torch.hub.get_dir()) / "checkpoints" / filename
        if not source.is_file():
            raise ModelError(
                f"ImageNet weights for {model.config.backbone} are not in torchvision's cache "
                f"({source}); simsearch never downloads. Copy {filename} there or pass its path.")
    source = Path(source)
    if not source.is_file():
        raise ModelError(f"{source}: ImageNet weights file not found")
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(f"{source}: cannot read ImageNet weights ({e})") from e
    # torchvision names the trunk's children conv1, bn1, layer1...; ours are trunk.0.. trunk.7
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    mapped = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head in names:
            mapped[f"{names.index(head)}.{rest}"] = value
    missing, unexpected = model.trunk.load_state_dict(mapped, strict=False)
    if missing:
        raise ModelError(f"{source}: not {model.config.backbone} ImageNet weights "
                         f"(missing {len(missing)} tensors, e.g. {missing[0]})")
    return model

