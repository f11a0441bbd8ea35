"""Validation during training: a small copy-detection benchmark built from held-out images.

Each validation image is a reference (squashed to the input size); one seeded `random_view` of
it is its query. The seed is `VALIDATION_SEED`, never the run's own `seed`: two runs on the same
folders are validated on the same images and the same edited copies, so their figures compare.
Every query is scored against every reference (the set is capped, so the n x n score matrix
stays small) and the run reports micro-average precision over all (query, reference) pairs and
Recall@1, the two numbers of `simsearch evaluate`.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from simsearch.edits import random_view
from simsearch.errors import DecodeError
from simsearch.evaluate import micro_average_precision
from simsearch.files import walk_images
from simsearch.images import resize_square
from simsearch.train.datasets import Skipped, check_root, decode_shrunk, to_batch_tensor

__all__ = ["VALIDATION_SEED", "ValidationSet", "load_validation", "validate"]

VALIDATION_SEED = 0  # the held-out images, their subsample and their edited copies, in every run


@dataclass(frozen=True)
class ValidationSet:
    paths: list[str]
    references: np.ndarray   # (n, H, W, 3) uint8
    queries: np.ndarray      # (n, H, W, 3) uint8, query i is an edited copy of reference i


def load_validation(config, paths: list[str] | None, skipped: list[Skipped]) -> ValidationSet | None:
    """Decode the validation images (from `config.val_dir` when `paths` is None) and make one
    seeded edited copy of each. None when fewer than 2 images are usable."""
    if paths is None:
        root = check_root(config.val_dir, "validation folder")
        found = [f.path for f in walk_images(
            [root], on_problem=lambda p: skipped.append(Skipped(p.path, p.reason)))]
        if len(found) > config.val_max:
            rng = np.random.default_rng(VALIDATION_SEED)
            found = sorted(rng.choice(found, config.val_max, replace=False).tolist())
        paths = found
    size = config.input_size
    kept, refs, queries = [], [], []
    for i, path in enumerate(paths):
        try:
            img = decode_shrunk(path, config.cache_px)
        except DecodeError as e:
            skipped.append(Skipped(path, e.reason))
            continue
        kept.append(path)
        refs.append(np.asarray(resize_square(img, size), dtype=np.uint8))
        rng = random.Random(f"validation:{VALIDATION_SEED}:{i}")
        queries.append(np.asarray(random_view(img, rng, size), dtype=np.uint8))
    if len(kept) < 2:
        return None
    return ValidationSet(kept, np.stack(refs), np.stack(queries))


def _embed(model, images: np.ndarray, device, bf16: bool, config, batch: int = 64) -> np.ndarray:
    mean, std = config.model_config().mean, config.model_config().std
    parts = []
    for start in range(0, len(images), batch):
        x = to_batch_tensor(list(images[start:start + batch]), mean, std, config.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            parts.append(model(x.to(device)).float().cpu().numpy())
    return np.concatenate(parts)


def validate(model, val: ValidationSet, device, bf16: bool, config) -> tuple[float, float]:
    """(uAP, Recall@1) of the model on the validation set; leaves the model in eval mode."""
    model.eval()
    with torch.no_grad():
        refs = _embed(model, val.references, device, bf16, config)
        queries = _embed(model, val.queries, device, bf16, config)
    scores = queries @ refs.T
    n = len(val.paths)
    truth = np.eye(n, dtype=bool)
    uap = micro_average_precision(scores.ravel(), truth.ravel(), n)
    recall = float(np.mean(scores.argmax(axis=1) == np.arange(n)))
    return uap, recall
