"""The training loop: data -> P x K batches -> embeddings -> mined triplets -> loss -> AdamW.

`train(TrainConfig(...), progress=callback) -> TrainResult`. The library never prints: every
step, epoch, skipped file, warning and checkpoint is a `TrainEvent` passed to `progress`.

Files in `out_dir`: `checkpoint.pt` (model + optimizer + JSON state, written atomically at each
epoch end and every `checkpoint_every` steps, loaded with `weights_only=True`), `train_log.jsonl`
(one line of metrics per epoch), `train_config.json`, and at the end `model.safetensors`
(`simsearch.model.save_model`) and its ONNX export `model.onnx` (`simsearch.export.export_onnx`,
checked against torch), which `--model` and `open_index(model=...)` take.

Guards: batches without any valid triplet are counted (a run that keeps producing them fails);
a loss stuck at exactly zero and a collapsing embedding space (`BatchStats.collapsed`) held for
`patience` steps after warm-up are reported as events and in the result.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from simsearch.export import export_onnx
from simsearch.model import EmbeddingNet, create_model, load_imagenet_trunk, load_model, save_model
from simsearch.errors import CollapseError, TrainingError
from simsearch.train.config import TrainConfig, bf16_supported, choose_device
from simsearch.train.datasets import (Batch, BatchPrefetcher, ClassFolderDataset, PairsDataset,
                                      Skipped, UnlabeledDataset)
from simsearch.train.memory import EmbeddingMemory
from simsearch.train.losses import (BatchStats, CeilingLoss, FloorLoss, InfoNCELoss, KoLeoLoss,
                                    TrainingMonitor, TripletMarginLoss, batch_stats)
from simsearch.train.miners import NoTripletsError, mine_triplets
from simsearch.train.samplers import ItemSampler, PKSampler
from simsearch.train.validation import VALIDATION_SEED, ValidationSet, load_validation, validate

__all__ = ["TrainConfig", "TrainEvent", "EpochMetrics", "TrainResult", "CollapseError", "train"]

CHECKPOINT = "checkpoint.pt"
_FORMAT = "simsearch-train-checkpoint-1"
_MAX_EMPTY_BATCHES = 20  # consecutive batches without a triplet before the run gives up


@dataclass(frozen=True)
class EpochMetrics:
    """One line of train_log.jsonl: training averages of an epoch and its validation scores."""

    epoch: int                       # 1-based
    step: int
    loss: float
    active_fraction: float | None
    lr: float
    views_per_s: float
    uap: float | None
    recall_at_1: float | None
    stats: BatchStats | None         # of the epoch's last batch
    batches_without_triplets: int
    seconds: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainEvent:
    """One progress report. kind: load | skip | start | step | epoch | checkpoint | warning |
    collapse | done. `message` is a ready-made sentence for warnings, skips and collapse."""

    kind: str
    epoch: int = 0
    step: int = 0
    total_steps: int = 0
    done: int = 0                    # load: images decoded so far, of `total`
    total: int = 0
    loss: float | None = None        # total loss (main + the weighted koleo, ceiling, floor, memory terms)
    main_loss: float | None = None
    koleo: float | None = None
    ceiling: float | None = None           # the negative-ceiling term, when it is on
    floor: float | None = None             # the positive-floor term, when it is on
    active_fraction: float | None = None   # triplet loss: share of mined triplets with loss > 0
    triplets: int | None = None            # triplets mined from the batch
    lr: float | None = None
    views_per_s: float | None = None       # smoothed, data loading included
    stats: BatchStats | None = None
    metrics: EpochMetrics | None = None
    message: str = ""


@dataclass
class TrainResult:
    model_path: Path | None
    model_sha256: str
    onnx_path: Path | None = None    # the ONNX export of model_path, same model identity
    epochs: list[EpochMetrics] = field(default_factory=list)
    steps: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    batches_without_triplets: int = 0
    zero_loss_steps: int = 0
    collapse_steps: int = 0          # steps after warm-up whose batch looked collapsed
    collapsed_at: int | None = None  # step where a collapse was first held for `patience` steps
    warnings: list[str] = field(default_factory=list)
    resumed_from_step: int | None = None
    device: str = "cpu"
    bf16: bool = False


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up to `base` over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _datasets(config: TrainConfig):
    size, cache = config.input_size, config.cache_px
    if config.data == "unlabeled":
        data = UnlabeledDataset(config.data_dir, size, cache, config.views)
    elif config.data == "classes":
        data = ClassFolderDataset(config.data_dir, size, cache, config.augment)
    else:
        data = PairsDataset(config.data_dir, config.right_dir, size, cache, config.augment)
    if config.val_dir:
        return data, None
    return data, data.holdout(config.val_fraction, VALIDATION_SEED, config.val_max)


def _sampler(config: TrainConfig, data):
    try:
        if config.data == "unlabeled":
            return ItemSampler(len(data), config.batch_size, config.seed)
        k = config.samples_per_class if config.data == "classes" else 2
        return PKSampler(data.labels, max(2, config.batch_size), k, config.seed)
    except TrainingError as e:
        raise TrainingError(f"{config.data_dir}: {e}") from None


def _build_model(config: TrainConfig) -> EmbeddingNet:
    init = config.init
    if init in ("random", "imagenet") or init.startswith("imagenet:"):
        model = create_model(config.model_config(), seed=config.seed)
        if init != "random":
            load_imagenet_trunk(model, init.partition(":")[2] or None)
        return model
    model = load_model(init)
    mine, theirs = config.model_config(), model.config
    for name in ("backbone", "dim", "pooling"):
        if getattr(mine, name) != getattr(theirs, name):
            raise TrainingError(f"{init}: the model has {name}={getattr(theirs, name)!r} but the "
                                f"config asks for {getattr(mine, name)!r}; make them match")
    model.config = dataclasses.replace(theirs, input_size=config.input_size)
    return model


def _frozen_modules(model: EmbeddingNet, freeze: int) -> list[torch.nn.Module]:
    t = model.trunk  # conv1, bn1, relu, maxpool, layer1..layer4
    return [torch.nn.Sequential(t[0], t[1]), t[4], t[5], t[6]][:freeze]


def _train_mode(model: EmbeddingNet, freeze: int) -> None:
    model.train()
    for module in _frozen_modules(model, freeze):  # frozen stages keep their BN statistics too
        module.eval()


def _optimizer(model: EmbeddingNet, config: TrainConfig) -> torch.optim.AdamW:
    for module in _frozen_modules(model, config.freeze):
        module.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]  # no decay on biases, BN and GeM p
    rest = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=config.lr)


def _save_checkpoint(path: Path, model, optimizer, state: dict) -> None:
    blob = {"format": _FORMAT, "state": json.dumps(state),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


# settings a resumed run may change, but then the rest of the run trains differently from its
# first part: said in a warning (train_config.json records the resumed run's settings)
_RECIPE = ("epochs", "steps_per_epoch", "batch_size", "lr", "weight_decay", "loss", "miner",
           "margin", "temperature", "koleo_weight", "views", "memory", "memory_weight",
           "negative_ceiling", "ceiling_weight", "positive_floor", "floor_weight", "seed")


def _load_checkpoint(path: Path, model, optimizer, config: TrainConfig) -> dict:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("format") != _FORMAT:
            raise TrainingError(f"{path}: not a simsearch training checkpoint")
        state = json.loads(blob["state"])
        saved = TrainConfig(**state["config"])
    except TrainingError:
        raise
    except Exception as e:
        raise TrainingError(f"{path}: unreadable checkpoint ({e}); delete it to start over") from e
    for name in ("data", "backbone", "dim", "input_size", "pooling", "freeze"):
        if getattr(saved, name) != getattr(config, name):
            raise TrainingError(f"{path} was written with {name}={getattr(saved, name)!r}, this run "
                                f"has {getattr(config, name)!r}; use the same setting or a new out_dir")
    try:
        model.load_state_dict(blob["model"])
        optimizer.load_state_dict(blob["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise TrainingError(f"{path}: checkpoint does not fit this network ({e})") from e
    return state


class _Run:
    """One training run: the pieces built from a config, and the loop over epochs and steps."""

    def __init__(self, config: TrainConfig, emit: Callable[[TrainEvent], None]):
        self.config, self.emit = config, emit
        self.out = Path(config.out_dir)
        self.ckpt_path = self.out / CHECKPOINT
        if self.ckpt_path.exists() and not config.resume:
            raise TrainingError(f"{self.out} already holds a training checkpoint; resume it "
                                "(--resume) or choose another output folder")
        self.device = choose_device(config.device)
        self.bf16 = config.bf16 == "on" or (config.bf16 == "auto" and bf16_supported(self.device))
        if config.threads:
            torch.set_num_threads(config.threads)
        self.result = TrainResult(None, "", device=str(self.device), bf16=self.bf16)
        self._load_data()
        resuming = config.resume and self.ckpt_path.exists()
        # a resumed run takes its weights from the checkpoint, not from `init`
        model = create_model(config.model_config()) if resuming else _build_model(config)
        self.model = model.to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = _optimizer(self.model, config)
        self.steps_per_epoch = min(len(self.sampler), config.steps_per_epoch or len(self.sampler))
        self.total = config.epochs * self.steps_per_epoch
        self.warmup = min(config.warmup_steps, max(1, self.total // 4))
        self.monitor = TrainingMonitor(config.patience, after_step=self.warmup)
        self.criterion = (TripletMarginLoss(config.margin) if config.loss == "triplet"
                          else InfoNCELoss(config.temperature))
        self.koleo = KoLeoLoss()
        self.memory = EmbeddingMemory(config.memory) if config.memory else None
        self.ceiling = CeilingLoss(config.negative_ceiling) if config.negative_ceiling else None
        self.floor = FloorLoss(config.positive_floor) if config.positive_floor else None
        self.state = {"epoch": 0, "step_in_epoch": 0, "step": 0, "epochs": []}
        if resuming:
            self._resume()
        self._restart_log()
        self.step = self.state["step"]
        self.views_per_s = 0.0
        self.empty_run = 0

    def _load_data(self) -> None:
        config, emit = self.config, self.emit
        self.data, val_paths = _datasets(config)
        # decoding comes before training: it may take every core
        self.data.load(os.cpu_count() or 1,
                       lambda done, total: emit(TrainEvent("load", done=done, total=total)))
        skipped: list[Skipped] = []
        self.val: ValidationSet | None = load_validation(config, val_paths, skipped)
        self.result.skipped = self.data.skipped + skipped
        for item in self.result.skipped:
            emit(TrainEvent("skip", message=f"skipping {item.path}: {item.reason}"))
        self.sampler = _sampler(config, self.data)

    def _resume(self) -> None:
        self.state = _load_checkpoint(self.ckpt_path, self.model, self.optimizer, self.config)
        saved = TrainConfig(**self.state["config"])
        changed = {name: (getattr(saved, name), getattr(self.config, name)) for name in _RECIPE
                   if getattr(saved, name) != getattr(self.config, name)}
        if changed:
            self.result.warnings.append(
                "resuming with settings the checkpoint was not made with: "
                + ", ".join(f"{name} {was!r} -> {now!r}" for name, (was, now) in changed.items())
                + "; the rest of the run trains with the new ones (train_config.json records them)")
            self.emit(TrainEvent("warning", message=self.result.warnings[-1]))
        # checkpoints written before VALIDATION_SEED seeded validation with the run's --seed
        was = self.state.get("validation_seed", saved.seed)
        if was != VALIDATION_SEED:
            self.result.warnings.append(
                f"this run began with validation seeded {was}, now {VALIDATION_SEED}: validation "
                "figures before and after the resume do not compare"
                + ("" if self.config.val_dir else "; the held-out share changed too, so some images "
                   "trained on are now validated on and some held out are now trained on"))
            self.emit(TrainEvent("warning", message=self.result.warnings[-1]))
        self.result.resumed_from_step = self.state["step"]
        self.result.batches_without_triplets = self.state.get("batches_without_triplets", 0)
        self.monitor.restore(self.state.get("monitor", {}))
        self.result.epochs = [
            EpochMetrics(**{**m, "stats": BatchStats(**m["stats"]) if m["stats"] else None})
            for m in self.state["epochs"]]

    def _restart_log(self) -> None:
        """train_log.jsonl says what the checkpoint knows (nothing on a fresh run): a stop between
        an epoch's log line and its checkpoint would otherwise log that epoch twice once it is run
        again, and a fresh run in an old run's folder would append to the old run's log."""
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "train_log.jsonl"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(m.to_dict()) + "\n" for m in self.result.epochs))
        os.replace(tmp, path)

    def _snapshot(self, epoch: int, step_in_epoch: int) -> None:
        _save_checkpoint(self.ckpt_path, self.model, self.optimizer, {
            "epoch": epoch, "step_in_epoch": step_in_epoch, "step": self.step,
            "batches_without_triplets": self.result.batches_without_triplets,
            "monitor": self.monitor.state(), "config": self.config.to_dict(),
            "validation_seed": VALIDATION_SEED,
            "epochs": [m.to_dict() for m in self.result.epochs]})
        self.emit(TrainEvent("checkpoint", epoch=epoch, step=self.step, message=str(self.ckpt_path)))

    def execute(self) -> TrainResult:
        config, data = self.config, self.data
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        self.emit(TrainEvent("start", step=self.step, total_steps=self.total, message=(
            f"{len(data)} images, {data.n_labels} labels, {self.steps_per_epoch} steps per epoch "
            f"on {self.device}{' with bf16 autocast' if self.bf16 else ''}"
            f"{'' if self.result.resumed_from_step is None else f', resuming at step {self.step}'}")))
        for epoch in range(self.state["epoch"], config.epochs):
            skip = self.state["step_in_epoch"] if epoch == self.state["epoch"] else 0
            self._epoch(epoch, skip)
        self.result.steps = self.step
        self.result.collapse_steps = self.monitor.collapse_steps
        self.result.collapsed_at = self.monitor.collapsed_at
        self.result.zero_loss_steps = self.monitor.zero_steps
        self.model.eval()
        self.result.model_path = self.out / "model.safetensors"
        model = self.model.to(memory_format=torch.contiguous_format).cpu()
        self.result.model_sha256 = save_model(model, self.result.model_path)
        # exported from the saved (fp16) weights, so that both files give the same vectors
        self.result.onnx_path = export_onnx(load_model(self.result.model_path),
                                            self.out / "model.onnx", self.result.model_sha256)
        self.emit(TrainEvent("done", step=self.step, total_steps=self.total,
                             message=f"{self.result.model_path} and {self.result.onnx_path}"))
        return self.result

    def _epoch(self, epoch: int, skip: int) -> None:
        config = self.config
        self.sampler.set_epoch(epoch)
        batches = iter(self.sampler)
        for _ in range(skip):
            next(batches, None)
        mean, std = config.model_config().mean, config.model_config().std
        _train_mode(self.model, config.freeze)
        started, losses, actives, empty, seen = time.perf_counter(), [], [], 0, 0
        stats = None
        with BatchPrefetcher(self.data, batches, self.step, config.seed, mean, std,
                             config.channels_last, config.workers) as prefetch:
            for step_in_epoch in range(skip, self.steps_per_epoch):
                t0 = time.perf_counter()
                batch = prefetch.next()
                seen += int(batch.labels.numel())  # views built: more than p x k with -frames
                out = self._step(batch, epoch, t0)
                if out is None:
                    empty += 1
                else:
                    loss, active, stats = out
                    losses.append(loss)
                    if active is not None:
                        actives.append(active)
                if config.checkpoint_every and self.step % config.checkpoint_every == 0:
                    self._snapshot(epoch, step_in_epoch + 1)
        seconds = time.perf_counter() - started
        uap = r1 = None
        if self.val is not None:
            uap, r1 = validate(self.model, self.val, self.device, self.bf16, config)
        metrics = EpochMetrics(
            epoch + 1, self.step, float(np.mean(losses)) if losses else float("nan"),
            float(np.mean(actives)) if actives else None,
            lr_at(max(0, self.step - 1), self.total, self.warmup, config.lr),
            seen / max(1e-9, seconds), uap, r1, stats, empty, seconds)
        self.result.epochs.append(metrics)
        with open(self.out / "train_log.jsonl", "a") as log:
            log.write(json.dumps(metrics.to_dict()) + "\n")
        self._snapshot(epoch + 1, 0)
        self.emit(TrainEvent("epoch", epoch=epoch + 1, step=self.step, total_steps=self.total,
                             metrics=metrics))

    def _step(self, batch: Batch, epoch: int, t0: float
              ) -> tuple[float, float | None, BatchStats] | None:
        """One optimisation step; None when the batch held no triplet (counted, no update)."""
        config, result = self.config, self.result
        result.skipped += batch.skipped
        for item in batch.skipped:
            self.emit(TrainEvent("skip", step=self.step, message=f"skipping {item.path}: {item.reason}"))
        if batch.x is None:
            raise TrainingError("every image of a batch failed to decode; check the data folder")
        lr = lr_at(self.step, self.total, self.warmup, config.lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, labels = batch.x.to(self.device, non_blocking=True), batch.labels.to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            embeddings = self.model(x)
        embeddings = embeddings.float()  # mining and losses in float32: bf16 cannot tell 0.99 from 1
        active = mined = None
        try:
            if config.loss == "triplet":
                triplets = mine_triplets(embeddings, labels, config.miner, config.margin)
                main = self.criterion.compute(embeddings, triplets)
                active, mined = main.active_fraction, len(triplets)
            else:
                main = self.criterion.compute(embeddings, labels)
            self.empty_run = 0
        except NoTripletsError as e:
            result.batches_without_triplets += 1
            self.empty_run += 1
            self.step += 1
            if result.batches_without_triplets == 1:
                result.warnings.append(f"step {self.step}: {e}; the batch was skipped")
                self.emit(TrainEvent("warning", epoch=epoch + 1, step=self.step,
                                     total_steps=self.total, message=result.warnings[-1]))
            if self.empty_run >= _MAX_EMPTY_BATCHES:
                raise TrainingError(f"{self.empty_run} batches in a row held no triplet ({e}); "
                                    "check that labels have 2 or more images each") from None
            return None
        spread = self.koleo.compute(embeddings, labels).loss if config.koleo_weight else None
        loss = main.loss if spread is None else main.loss + config.koleo_weight * spread
        held = None
        if self.ceiling is not None:
            bank = self.memory.remembered() if self.memory is not None else None
            held = self.ceiling.compute(embeddings, labels, bank).loss
            loss = loss + config.ceiling_weight * held
        lifted = None
        if self.floor is not None:
            lifted = self.floor.compute(embeddings, labels).loss
            loss = loss + config.floor_weight * lifted
        if self.memory is not None:
            remembered = self.memory.triplet_loss(embeddings, labels, config.margin)
            if remembered is not None:
                loss = loss + config.memory_weight * remembered
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.memory is not None:  # after backward: the losses above read the ring in place
            self.memory.push(embeddings, labels)
        self.step += 1
        rate = labels.numel() / max(1e-9, time.perf_counter() - t0)  # data wait included
        self.views_per_s = _ema(self.views_per_s, rate)
        stats = batch_stats(embeddings, labels)
        main_value = float(main.loss.detach())
        for kind, message in self.monitor.update(self.step, main_value, stats):
            result.warnings.append(message)
            self.emit(TrainEvent(kind, epoch=epoch + 1, step=self.step, total_steps=self.total,
                                 stats=stats, message=message))
            if kind == "collapse" and config.stop_on_collapse:
                raise CollapseError(message + " (stopped: stop_on_collapse is set; the last "
                                    "epoch-end checkpoint is kept)")
        value = float(loss.detach())
        self.emit(TrainEvent("step", epoch=epoch + 1, step=self.step, total_steps=self.total,
                             loss=value, main_loss=main_value,
                             koleo=None if spread is None else float(spread.detach()),
                             ceiling=None if held is None else float(held.detach()),
                             floor=None if lifted is None else float(lifted.detach()),
                             active_fraction=active, triplets=mined, lr=lr, views_per_s=self.views_per_s,
                             stats=stats))
        return value, active, stats


def _ema(old: float, new: float, keep: float = 0.9) -> float:
    return new if not old else keep * old + (1.0 - keep) * new


def train(config: TrainConfig, progress: Callable[[TrainEvent], None] | None = None) -> TrainResult:
    """Train an embedding network as `config` says; see the module docstring for files and guards.

    Raises `TrainingError` (with what to do) when the run cannot start or go on, `CollapseError`
    when the space collapses and `stop_on_collapse` is set.
    """
    return _Run(config, progress or (lambda event: None)).execute()
