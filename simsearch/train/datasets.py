"""Training data: three kinds of folders, turned into batches of normalised view tensors.

  ClassFolderDataset(root)          one subfolder per label (images of one object, scene, ...)
  PairsDataset(left_dir, right_dir) a copy pair per file name: left/x.jpg ~ right/x.png
  UnlabeledDataset(root)            any images: each yields two `random_view`s of itself

Life cycle: the constructor only lists files (cheap); `holdout()` may move some labels out for
validation; `load()` decodes every image once, shrinks it to at most `cache_px` on its long
side and keeps it in RAM (decoding JPEGs every step is too slow on two cores; 25k images at
256 px are a few GB). Without `load()`, images are decoded on demand. An image that cannot be
decoded is skipped with its path and reason in `skipped`; training goes on without it.

Every image under the folder given is used, whatever it is called: keeping evaluation pictures
out of training is the job of whoever builds the folders (the default model's recipe refuses
its evaluation packages itself, see recipes/default_model/build_data.py).
"""
from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance

from simsearch.edits import (FRAME_VIEWS, VIEW_RECIPES, picture_style, random_box, random_view,
                             shared_frame)
from simsearch.errors import DecodeError
from simsearch.files import WalkProblem, walk_images
from simsearch.images import load_image, resize_square
from simsearch.errors import TrainingError

__all__ = ["Skipped", "check_root", "ClassFolderDataset",
           "PairsDataset", "UnlabeledDataset",
           "decode_shrunk", "to_batch_tensor", "Batch", "build_batch", "BatchPrefetcher"]

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Skipped:
    """A file left out of training, and why."""

    path: str
    reason: str


def check_root(root: str | os.PathLike, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise TrainingError(f"{what} {root} is not a folder")
    return root


def _list_images(root: Path, skipped: list[Skipped]) -> list[str]:
    def problem(p: WalkProblem) -> None:
        skipped.append(Skipped(p.path, p.reason))

    return [info.path for info in walk_images([root], on_problem=problem)]


def decode_shrunk(path: str, cache_px: int) -> Image.Image:
    """Decode `path` and shrink it (aspect kept) so its long side is at most `cache_px`."""
    img = load_image(path, target=cache_px).image
    if max(img.size) > cache_px:
        f = cache_px / max(img.size)
        size = (max(1, round(img.width * f)), max(1, round(img.height * f)))
        img = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    return img


def light_augment(img: Image.Image, rng: random.Random, size: int) -> Image.Image:
    """A mild view for labelled data: crop 80-100% of the area, flip, +-10% brightness/contrast."""
    box = random_box(img.width, img.height, rng.uniform(0.8, 1.0), math.log(1.1), rng)
    out = img.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=3.0)
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.9, 1.1))
    return ImageEnhance.Contrast(out).enhance(rng.uniform(0.9, 1.1))


def to_batch_tensor(views: list[np.ndarray], mean, std, channels_last: bool = True) -> torch.Tensor:
    """Stack HxWx3 uint8 views into a normalised float (N, 3, H, W) tensor."""
    x = torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2).float().div_(255.0)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


class _TrainingData:
    """Items (paths with labels), the RAM cache, and view making shared by the three kinds."""

    views_per_item = 1

    def __init__(self, size: int, cache_px: int, augment: bool):
        self.size, self.cache_px, self.augment = int(size), int(cache_px), augment
        self.paths: list[str] = []
        self.labels = np.zeros(0, dtype=np.int64)
        self.skipped: list[Skipped] = []
        self._images: list[Image.Image] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def n_labels(self) -> int:
        return int(np.unique(self.labels).size)

    def holdout(self, fraction: float, seed: int, max_labels: int = 1000) -> list[str]:
        """Remove a seeded `fraction` of the labels (at most `max_labels`) from training and
        return one image path per removed label, for validation. Call before `load()`."""
        if self._images is not None:
            raise TrainingError("holdout() must be called before load()")
        labels = np.unique(self.labels)
        n = min(int(round(len(labels) * fraction)), max_labels, len(labels) - 2)
        if fraction <= 0 or n < 1:
            return []
        chosen = set(np.random.default_rng(seed).choice(labels, n, replace=False).tolist())
        val, keep = {}, []
        for i, (path, label) in enumerate(zip(self.paths, self.labels.tolist())):
            if label in chosen:
                val.setdefault(label, path)
            else:
                keep.append(i)
        self._select(keep)
        return [val[label] for label in sorted(val)]

    def _select(self, keep: list[int]) -> None:
        self.paths = [self.paths[i] for i in keep]
        self.labels = self.labels[keep] if keep else np.zeros(0, dtype=np.int64)
        if self._images is not None:
            self._images = [self._images[i] for i in keep]

    def load(self, workers: int = 1, progress: Progress | None = None) -> None:
        """Decode every image into RAM (threads: Pillow decodes without the GIL); drop failures."""
        total, done = len(self.paths), 0
        results: list[Image.Image | None] = []

        def one(path: str) -> Image.Image | Skipped:
            try:
                return decode_shrunk(path, self.cache_px)
            except DecodeError as e:
                return Skipped(path, e.reason)

        with ThreadPoolExecutor(max(1, workers)) as pool:
            for out in pool.map(one, self.paths, chunksize=16):
                if isinstance(out, Skipped):
                    self.skipped.append(out)
                    out = None
                results.append(out)
                done += 1
                if progress and (done % 64 == 0 or done == total):
                    progress(done, total)
        self._images = results
        self._select([i for i, img in enumerate(results) if img is not None])

    def picture(self, index: int) -> Image.Image:
        """The (shrunk) picture of item `index`; raises DecodeError when decoded on demand."""
        if self._images is not None:
            return self._images[index]
        return decode_shrunk(self.paths[index], self.cache_px)

    def labelled_views(self, index: int, rng: random.Random, busy: set[int] | None = None
                       ) -> tuple[list[np.ndarray], list[int]]:
        """The item's training views and the label of each (the item's own, unless a recipe
        brings another picture along: `busy`, the items it must not bring)."""
        views = self.views(index, rng)
        return views, [int(self.labels[index])] * len(views)

    def views(self, index: int, rng: random.Random) -> list[np.ndarray]:
        """The item's training view(s) as HxWx3 uint8 arrays, all with the item's label."""
        img = self.picture(index)
        if not self.augment:
            return [np.asarray(resize_square(img, self.size), dtype=np.uint8)]
        return [np.asarray(light_augment(img, rng, self.size), dtype=np.uint8)]


class ClassFolderDataset(_TrainingData):
    """One subfolder of `root` per label; images at any depth below it belong to it."""

    def __init__(self, root: str | os.PathLike, size: int = 160, cache_px: int = 256,
                 augment: bool = True):
        super().__init__(size, cache_px, augment)
        root = check_root(root, "class folder root")
        self.class_names: list[str] = []
        labels = []
        for entry in sorted(os.scandir(root), key=lambda e: e.name):
            if entry.is_dir():
                found = _list_images(Path(entry.path), self.skipped)
                if found:
                    labels += [len(self.class_names)] * len(found)
                    self.paths += found
                    self.class_names.append(entry.name)
            elif entry.is_file():
                self.skipped.append(Skipped(entry.path, "not inside a class subfolder"))
        self.labels = np.asarray(labels, dtype=np.int64)


class PairsDataset(_TrainingData):
    """Copy pairs matched by relative path without suffix: left/a/x.jpg pairs with right/a/x.png.
    Pair i gives two items, both with label i."""

    def __init__(self, left_dir: str | os.PathLike, right_dir: str | os.PathLike, size: int = 160,
                 cache_px: int = 256, augment: bool = True):
        super().__init__(size, cache_px, augment)
        sides = []
        for what, root in (("left", left_dir), ("right", right_dir)):
            root = check_root(root, f"{what} pairs folder")
            keyed: dict[str, list[str]] = {}
            for path in _list_images(root, self.skipped):
                keyed.setdefault(os.path.splitext(os.path.relpath(path, root))[0], []).append(path)
            sides.append((what, keyed))
        (_, left), (_, right) = sides
        labels = []
        for key in sorted(set(left) | set(right)):
            group = left.get(key, []) + right.get(key, [])
            if key in left and key in right and len(left[key]) == len(right[key]) == 1:
                labels += [len(labels) // 2] * 2
                self.paths += group
                continue
            reason = ("ambiguous: several files share this name with different suffixes"
                      if len(group) > 2 else
                      f"no file of the same name in the {'right' if key in left else 'left'} folder")
            self.skipped += [Skipped(p, reason) for p in group]
        self.labels = np.asarray(labels, dtype=np.int64)


class UnlabeledDataset(_TrainingData):
    """Self-supervised: every image is its own label and yields two random copy-style views."""

    views_per_item = 2

    def __init__(self, root: str | os.PathLike, size: int = 160, cache_px: int = 256,
                 recipe: str = "copy"):
        super().__init__(size, cache_px, augment=True)
        self.recipe = recipe
        self.paths = _list_images(check_root(root, "training image folder"), self.skipped)
        self.labels = np.arange(len(self.paths), dtype=np.int64)

    def views(self, index: int, rng: random.Random) -> list[np.ndarray]:
        img = picture_style(self.picture(index), rng, self.recipe)
        return [np.asarray(random_view(img, rng, self.size, self.recipe), dtype=np.uint8)
                for _ in range(2)]

    def labelled_views(self, index: int, rng: random.Random, busy: set[int] | None = None
                       ) -> tuple[list[np.ndarray], list[int]]:
        """`views`, or with the recipe's `frame_p` chance two views each of this picture and of
        another one set into one `shared_frame`: four views, each pair with its own picture's
        label. The other picture is the next item but a random stride, never the item itself
        nor one in `busy` (the batch's items and the pictures already brought into it, which
        this adds to), so that a framed picture, perhaps inked as line art, never meets its
        own photograph in a batch as a pair: a sketch of a picture is not a copy of it. Where
        no such picture is found, or it cannot be decoded, the item gives its plain views."""
        chance = VIEW_RECIPES[self.recipe].frame_p
        if not chance or len(self) < 2 or rng.random() >= chance:
            return super().labelled_views(index, rng)
        busy = set() if busy is None else busy
        for _ in range(8):
            other = (index + rng.randrange(1, len(self))) % len(self)
            if other not in busy:
                break
        else:
            other = None
        try:
            second = None if other is None else self.picture(other)
        except DecodeError:
            second = None
        if second is None:
            return super().labelled_views(index, rng)
        busy.add(other)
        framed = shared_frame(self.picture(index), second, rng, self.cache_px)
        views, labels = [], []
        for picture, label in zip(framed, (self.labels[index], self.labels[other])):
            views += [np.asarray(random_view(picture, rng, self.size, FRAME_VIEWS), dtype=np.uint8)
                      for _ in range(2)]
            labels += [int(label)] * 2
        return views, labels


@dataclass
class Batch:
    """One training batch: normalised views, their labels, and items that failed to decode."""

    x: torch.Tensor | None           # (views, 3, H, W) float; None when nothing decoded
    labels: torch.Tensor             # (views,) int64
    skipped: list[Skipped]


def build_batch(data: _TrainingData, indices: list[int], seed: int, step: int, mean, std,
                channels_last: bool = True) -> Batch:
    """The views of the items `indices`. Each item's randomness is seeded by (seed, step, slot),
    so batches are the same whichever thread builds them and after a resume."""
    views, labels, skipped = [], [], []
    busy = set(indices)  # a look-alike brought into the batch is none of its items, nor twice
    for slot, index in enumerate(indices):
        try:
            item, item_labels = data.labelled_views(index, random.Random(f"{seed}:{step}:{slot}"), busy)
        except DecodeError as e:
            skipped.append(Skipped(str(e.path), e.reason))
            continue
        views += item
        labels += item_labels
    x = to_batch_tensor(views, mean, std, channels_last) if views else None
    return Batch(x, torch.tensor(labels, dtype=torch.long), skipped)


class BatchPrefetcher:
    """Builds the next batches on `workers` threads while the model trains on the current one
    (Pillow's resizing and filters release the GIL). workers=0 builds in the calling thread."""

    def __init__(self, data: _TrainingData, batches: Iterator[list[int]], first_step: int,
                 seed: int, mean, std, channels_last: bool = True, workers: int = 1):
        self.batches, self.step = batches, first_step
        self.args = (data, seed, mean, std, channels_last)
        self.pool = ThreadPoolExecutor(workers) if workers > 0 else None
        self.queue: list = []
        for _ in range(max(1, workers)):
            self._submit()

    def _submit(self) -> None:
        indices = next(self.batches, None)
        if indices is None:
            return
        data, seed, mean, std, channels_last = self.args
        args = (data, indices, seed, self.step, mean, std, channels_last)
        self.queue.append(self.pool.submit(build_batch, *args) if self.pool else args)
        self.step += 1

    def next(self) -> Batch:
        if not self.queue:
            raise TrainingError("the sampler ran out of batches")
        head = self.queue.pop(0)
        self._submit()
        return head.result() if self.pool else build_batch(*head)

    def close(self) -> None:
        if self.pool:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "BatchPrefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
