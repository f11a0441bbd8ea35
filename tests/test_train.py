"""Training pieces: losses against brute-force loops, miners against hand-worked batches,
samplers, datasets, and a few tiny seeded training runs (ResNet-18 at 48-64 px, dim 16, CPU)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")  # the train extra; CI installs it with .[test]

import torch.nn.functional as F  # noqa: E402
from simsearch.model import create_model, load_model, save_model  # noqa: E402
from simsearch.train import (  # noqa: E402
    CHECKPOINT, BatchStats, ClassFolderDataset, InfoNCELoss, ItemSampler, KoLeoLoss,
    NoTripletsError, PairsDataset, PKSampler, TrainConfig, TrainingError, TrainingMonitor,
    TripletMarginLoss, UnlabeledDataset, batch_stats, lr_at, mine_triplets, train)
from simsearch.train.datasets import build_batch  # noqa: E402
from simsearch.train.miners import Triplets  # noqa: E402
from simsearch.train.validation import load_validation  # noqa: E402

# --- helpers ---------------------------------------------------------------------------


def _picture(rng: np.random.Generator, size=(72, 60)) -> Image.Image:
    """A distinctive test picture: a random 4x4 colour grid blown up, with a random bar."""
    grid = (rng.random((4, 4, 3)) * 255).astype(np.uint8)
    img = np.asarray(Image.fromarray(grid).resize(size, Image.Resampling.NEAREST)).copy()
    y = int(rng.integers(0, size[1] - 8))
    img[y:y + 8, :, :] = (rng.random(3) * 255).astype(np.uint8)
    return Image.fromarray(img)


def _write_images(folder, n: int, seed: int = 0, prefix: str = "img") -> list:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"{prefix}{i:03d}.png"
        _picture(rng).save(path)
        paths.append(path)
    return paths


def _unit(n: int, dim: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1)


def _brute_triplets(labels):
    n = len(labels)
    return {(a, p, q) for a in range(n) for p in range(n) for q in range(n)
            if a != p and labels[a] == labels[p] and labels[q] != labels[a]}


def _tiny(tmp_path, data_dir, **kw) -> TrainConfig:
    base = dict(data_dir=str(data_dir), out_dir=str(tmp_path / "run"), dim=16, input_size=48,
                batch_size=8, epochs=2, val_fraction=0.0, warmup_steps=4, workers=1, cache_px=96,
                patience=1000, seed=3)
    base.update(kw)
    return TrainConfig(**base)


# --- losses against brute force ---------------------------------------------------------

LABELS = [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3]


def test_all_miner_returns_every_valid_triplet():
    x = _unit(len(LABELS), 8)
    got = mine_triplets(x, torch.tensor(LABELS), "all").as_set()
    assert got == _brute_triplets(LABELS)


def test_triplet_loss_equals_brute_force_loop():
    x = _unit(len(LABELS), 8, seed=1)
    margin = 0.3
    result = TripletMarginLoss(margin).compute(x, mine_triplets(x, torch.tensor(LABELS), "all"))
    v = x.double().tolist()
    losses = []
    for a, p, n in _brute_triplets(LABELS):
        d_ap = 1 - sum(i * j for i, j in zip(v[a], v[p]))
        d_an = 1 - sum(i * j for i, j in zip(v[a], v[n]))
        losses.append(max(0.0, d_ap - d_an + margin))
    active = [v for v in losses if v > 0]
    assert result.terms == len(losses)
    assert result.active_fraction == pytest.approx(len(active) / len(losses))
    assert float(result.loss) == pytest.approx(sum(active) / len(active), abs=1e-5)


def test_triplet_loss_is_zero_with_gradient_when_nothing_is_active():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]], requires_grad=True)
    result = TripletMarginLoss(0.2).compute(x, mine_triplets(x, torch.tensor([0, 0, 1, 1]), "all"))
    assert float(result.loss.detach()) == 0.0 and result.active_fraction == 0.0
    result.loss.backward()  # an all-easy batch must not break the step


def test_infonce_equals_brute_force_loop():
    x = _unit(len(LABELS), 8, seed=2)
    t = 0.1
    got = float(InfoNCELoss(t).compute(x, torch.tensor(LABELS)).loss)
    v = x.double().tolist()
    dot = lambda i, j: sum(a * b for a, b in zip(v[i], v[j]))  # noqa: E731
    terms = []
    for i, li in enumerate(LABELS):
        negatives = sum(math.exp(dot(i, k) / t) for k, lk in enumerate(LABELS) if lk != li)
        for j, lj in enumerate(LABELS):
            if j != i and lj == li:
                e = math.exp(dot(i, j) / t)
                terms.append(-math.log(e / (e + negatives)))
    assert got == pytest.approx(sum(terms) / len(terms), abs=1e-4)


def test_koleo_equals_brute_force_loop():
    x = _unit(len(LABELS), 8, seed=3)
    got = float(KoLeoLoss().compute(x, torch.tensor(LABELS)).loss)
    v = x.double().tolist()
    logs = []
    for i, li in enumerate(LABELS):
        nearest = min(math.dist(v[i], v[k]) for k, lk in enumerate(LABELS) if lk != li)
        logs.append(-math.log(nearest))
    assert got == pytest.approx(sum(logs) / len(logs), abs=1e-4)


def test_losses_check_shapes():
    with pytest.raises(TrainingError):
        one = torch.zeros(1, dtype=torch.long)
        TripletMarginLoss(0.2).compute(torch.zeros(4), Triplets(one, one, one))
    with pytest.raises(TrainingError):
        InfoNCELoss().compute(_unit(4, 3), torch.tensor([0, 0, 1]))
    with pytest.raises(TrainingError):
        TripletMarginLoss(2.5)


# --- miners on a hand-worked batch -------------------------------------------------------

# Unit vectors on a circle, so every cosine distance 1 - cos(angle difference) can be read off:
# 10 deg 0.015, 15 deg 0.034, 30 deg 0.134, 40 deg 0.234, 45 deg 0.293, 55 deg 0.426,
# 60 deg 0.5, 70 deg 0.658, 100 deg 1.174, 125+ deg > 1.5, 180 deg 2.
ANGLES = [0, 30, 40, 100, 45, 225]
CIRCLE_LABELS = [0, 0, 1, 1, 2, 2]


def _circle():
    rad = torch.tensor(ANGLES, dtype=torch.float64) * math.pi / 180
    return torch.stack([rad.cos(), rad.sin()], dim=1).float(), torch.tensor(CIRCLE_LABELS)


def test_semihard_miner_picks_the_band_between_positive_and_margin():
    x, labels = _circle()
    # (0,1): d_ap .134, band (.134, .384) holds 2 (.234) and 4 (.293); 3 and 5 are easy.
    # (3,2): d_ap .5, band (.5, .75) holds 1 (.658); 4 (.426) is hard, 0 and 5 are easy.
    # (1,0), (2,3), (4,5), (5,4): no negative in the band.
    strict = mine_triplets(x, labels, "semihard", margin=0.25, fallback=False)
    assert strict.as_set() == {(0, 1, 2), (0, 1, 4), (3, 2, 1)}
    # The fallback gives those pairs their least-hard violating negative (largest d <= d_ap):
    # (1,0): 2 .015 / 4 .034 -> 4; (2,3): 0 .234 / 1 .015 / 4 .004 -> 0;
    # (4,5): d_ap 2, largest is 3 (.426); (5,4): largest is 2 (1.996).
    loose = mine_triplets(x, labels, "semihard", margin=0.25, fallback=True)
    assert loose.as_set() == {(0, 1, 2), (0, 1, 4), (3, 2, 1),
                              (1, 0, 4), (2, 3, 0), (4, 5, 3), (5, 4, 2)}
    assert loose.fallbacks == 4 and loose.pairs == 6


def test_hard_miner_picks_the_closest_negative_per_pair():
    x, labels = _circle()
    got = mine_triplets(x, labels, "hard").as_set()
    assert got == {(0, 1, 2), (1, 0, 2), (2, 3, 4), (3, 2, 4), (4, 5, 2), (5, 4, 3)}


def test_miner_raises_on_a_batch_without_triplets():
    with pytest.raises(NoTripletsError, match="no valid triplet"):
        mine_triplets(_unit(4, 3), torch.tensor([7, 7, 7, 7]))
    with pytest.raises(NoTripletsError):
        mine_triplets(_unit(4, 3), torch.tensor([0, 1, 2, 3]))


# --- collapse detection -------------------------------------------------------------------


def test_collapse_detection_fires_on_constant_embeddings():
    constant = torch.ones(8, 16)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    stats = batch_stats(constant, labels)
    assert stats.mean_cos == pytest.approx(1.0) and stats.nearest_negative_cos == pytest.approx(1.0)
    assert stats.collapsed()
    assert not batch_stats(_unit(8, 16), labels).collapsed()
    monitor = TrainingMonitor(patience=3, after_step=2)
    kinds = [[k for k, _ in monitor.update(step, 0.1, stats)] for step in range(1, 7)]
    assert kinds == [[], [], [], [], ["collapse"], []]  # steps 3, 4, 5 after warm-up
    assert monitor.collapsed_at == 5 and monitor.collapse_steps == 4


def test_monitor_warns_when_the_loss_is_stuck_at_zero():
    monitor = TrainingMonitor(patience=2)
    healthy = BatchStats(0.1, 0.9, 0.3)
    events = [monitor.update(s, 0.0, healthy) for s in range(1, 4)]
    assert [k for e in events for k, _ in e] == ["warning"] and monitor.zero_steps == 3


# --- samplers -----------------------------------------------------------------------------


def test_pk_sampler_always_gives_k_items_of_p_distinct_labels():
    labels = [0] * 5 + [1] * 2 + [2] * 7 + [3] * 1 + [4] * 3 + [5] * 4
    sampler = PKSampler(labels, p=3, k=3, seed=1)
    assert sampler.summary.skipped_labels == 1 and sampler.summary.short_labels == 1
    seen = set()
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        for batch in batches:
            got = [labels[i] for i in batch]
            counts = {label: got.count(label) for label in got}
            assert len(counts) == 3 and set(counts.values()) == {3}
            assert 3 not in counts  # the single-image label is never used
            seen |= set(counts)
    assert seen == {0, 1, 2, 4, 5}
    sampler.set_epoch(1)
    assert list(sampler) == list(sampler)  # seeded per epoch


def test_pk_sampler_skip_policy_and_errors():
    sampler = PKSampler([0, 0, 0, 1, 1, 2, 2, 2], p=2, k=3, short="skip")
    assert sampler.summary.usable_labels == 2 and sampler.summary.skipped_labels == 1
    with pytest.raises(TrainingError, match="at least 2 labels"):
        PKSampler([0, 1, 2, 3], p=2, k=2)  # every label has one image
    with pytest.raises(TrainingError, match="at least 2 labels"):
        PKSampler([0, 0, 0, 0], p=2, k=2)  # a single label
    with pytest.raises(TrainingError, match="K"):
        PKSampler([0, 0, 1, 1], p=2, k=1)


def test_item_sampler_covers_distinct_items():
    sampler = ItemSampler(10, 4, seed=0)
    batches = list(sampler)
    flat = [i for b in batches for i in b]
    assert len(batches) == 2 and len(set(flat)) == len(flat) == 8


# --- datasets -----------------------------------------------------------------------------


def test_datasets_list_match_and_skip(tmp_path):
    _write_images(tmp_path / "classes" / "a", 3, seed=1)
    _write_images(tmp_path / "classes" / "b", 2, seed=2)
    (tmp_path / "classes" / "b" / "broken.jpg").write_bytes(b"not a jpeg")
    _write_images(tmp_path / "classes", 1, seed=3, prefix="loose")
    data = ClassFolderDataset(tmp_path / "classes", size=32, cache_px=64)
    assert data.class_names == ["a", "b"] and len(data) == 6
    data.load()
    assert len(data) == 5 and data.labels.tolist() == [0, 0, 0, 1, 1]
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in ((s.path, s.reason) for s in data.skipped)}
    assert "broken.jpg" in reasons and "loose000.png" in reasons

    _write_images(tmp_path / "L", 3, 4)
    right = _write_images(tmp_path / "R", 2, 5)
    Image.open(right[0]).save(tmp_path / "R" / "img000.jpg")  # img000 now ambiguous on the right
    pairs = PairsDataset(tmp_path / "L", tmp_path / "R", size=32)
    assert [p.rsplit("/", 1)[-1] for p in pairs.paths] == ["img001.png", "img001.png"]
    assert pairs.labels.tolist() == [0, 0] and len(pairs.skipped) == 4

    batch = build_batch(pairs, [0, 1], seed=0, step=0, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert tuple(batch.x.shape) == (2, 3, 32, 32) and batch.labels.tolist() == [0, 0]
    unlabeled = UnlabeledDataset(tmp_path / "L", size=32)
    batch = build_batch(unlabeled, [2, 0], seed=0, step=0, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert batch.labels.tolist() == [2, 2, 0, 0]
    assert batch.x.is_contiguous(memory_format=torch.channels_last)


def test_a_users_folder_is_trained_on_whatever_it_is_called(tmp_path):
    # The default model's evaluation rule lives in its recipe, not here: a user's own wallpapers
    # and backgrounds are training data like any other picture.
    root = tmp_path / "My_Wallpapers_2024"
    _write_images(root / "gnome-backgrounds", 2)
    _write_images(root / "desktop-base", 2, prefix="d")
    _write_images(root / "tuxpaint-stamps", 2, prefix="t")
    data = UnlabeledDataset(root)
    assert len(data) == 6 and data.skipped == []
    validation = load_validation(TrainConfig(data_dir=str(root), val_dir=str(root / "gnome-backgrounds"),
                                             input_size=32), None, [])
    assert validation is not None and len(validation.paths) == 2


def test_config_refuses_bad_settings(tmp_path):
    with pytest.raises(TrainingError, match="data_dir"):
        TrainConfig()
    with pytest.raises(TrainingError, match="miner"):
        TrainConfig(data_dir=str(tmp_path), miner="batch-all")
    with pytest.raises(TrainingError, match="right_dir"):
        TrainConfig(data_dir=str(tmp_path), data="pairs")
    with pytest.raises(TrainingError, match="backbone"):
        TrainConfig(data_dir=str(tmp_path), backbone="vgg16")


def test_lr_schedule_warms_up_then_decays():
    lrs = [lr_at(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] < 0.01


# --- training runs --------------------------------------------------------------------------


def _write_classes(root, n_classes: int = 8, per_class: int = 10, seed: int = 7) -> None:
    """Class folders of noisy, shifted variants of one random picture per class."""
    rng = np.random.default_rng(seed)
    for c in range(n_classes):
        base = np.asarray(_picture(rng, (80, 80)), dtype=np.float32)
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            shifted = np.roll(base, tuple(int(v) for v in rng.integers(-6, 7, 2)), axis=(0, 1))
            noisy = np.clip(shifted + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(root / f"class{c}" / f"{i}.png")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 30-step run on generated class folders, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("trained")
    _write_classes(tmp / "data")
    for c in range(8):  # whichever classes are held out for validation, some train with it
        (tmp / "data" / f"class{c}" / "unreadable.png").write_bytes(b"\x89PNG broken")
    events = []
    config = _tiny(tmp, tmp / "data", data="classes", samples_per_class=3, batch_size=4,
                   input_size=64, epochs=6, val_fraction=0.25, lr=1e-3, miner="all")
    result = train(config, progress=events.append)
    return config, result, events


def _all_triplet_loss(model, config) -> float:
    """Hinge loss averaged over *all* triplets of the training images (no augmentation)."""
    data = ClassFolderDataset(config.data_dir, size=config.input_size, augment=False)
    data.load()
    batch = build_batch(data, list(range(len(data))), 0, 0, config.model_config().mean,
                        config.model_config().std)
    with torch.no_grad():
        emb = model.eval()(batch.x)
    t = mine_triplets(emb, batch.labels, "all")
    d_ap = 1 - (emb[t.anchors] * emb[t.positives]).sum(1)
    d_an = 1 - (emb[t.anchors] * emb[t.negatives]).sum(1)
    return float((d_ap - d_an + config.margin).clamp(min=0).mean())


def test_training_lowers_the_loss(trained):
    config, result, events = trained
    steps = [e for e in events if e.kind == "step"]
    assert len(steps) == result.steps == 30
    assert all(0 <= e.active_fraction <= 1 and e.views_per_s > 0 and e.lr > 0 for e in steps)
    before = _all_triplet_loss(create_model(config.model_config(), seed=config.seed), config)
    after = _all_triplet_loss(load_model(result.model_path), config)
    print(f"all-triplet loss {before:.4f} -> {after:.4f}")
    assert after < 0.5 * before, (before, after)
    assert [e.kind for e in events].count("epoch") == 6
    assert any(e.kind == "skip" and "unreadable.png" in e.message for e in events)
    assert any("unreadable.png" in s.path for s in result.skipped)
    log = [json.loads(line) for line in (result.model_path.parent / "train_log.jsonl").open()]
    assert [m["epoch"] for m in log] == [1, 2, 3, 4, 5, 6]
    assert all(0 <= m["uap"] <= 1 and 0 <= m["recall_at_1"] <= 1 for m in log)


def test_save_load_gives_identical_vectors(trained, tmp_path):
    config, result, _ = trained
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    model = load_model(result.model_path)
    again = load_model(result.model_path)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    save_model(model, tmp_path / "full.safetensors", half=False)
    with torch.no_grad():
        assert torch.equal(model(x), load_model(tmp_path / "full.safetensors")(x))
    # the fp32 training checkpoint holds the same network as the (fp16-stored) final model
    blob = torch.load(result.model_path.parent / CHECKPOINT, weights_only=True)
    full = create_model(config.model_config())
    full.load_state_dict(blob["model"])
    with torch.no_grad():
        cos = (full.eval()(x) * model(x)).sum(1)
    assert bool((cos > 0.999).all())


def test_resume_continues_from_the_checkpoint(tmp_path):
    _write_images(tmp_path / "data", 32, seed=5)
    straight = train(_tiny(tmp_path, tmp_path / "data", out_dir=str(tmp_path / "a")))
    assert straight.steps == 8

    class Stop(Exception):
        pass

    def stop_after_epoch_1(event):
        if event.kind == "epoch" and event.epoch == 1:
            raise Stop

    cut = _tiny(tmp_path, tmp_path / "data", out_dir=str(tmp_path / "b"))
    with pytest.raises(Stop):
        train(cut, progress=stop_after_epoch_1)
    with pytest.raises(TrainingError, match="--resume"):
        train(cut)
    # as a kill between epoch 2's log line and its checkpoint would leave it
    log_path = tmp_path / "b" / "train_log.jsonl"
    log_path.write_text(log_path.read_text() + log_path.read_text().splitlines()[-1].replace(
        '"epoch": 1', '"epoch": 2') + "\n")
    seen = []
    resumed = train(_tiny(tmp_path, tmp_path / "data", out_dir=str(tmp_path / "b"), resume=True),
                    progress=seen.append)
    assert resumed.resumed_from_step == 4 and resumed.steps == 8
    assert not any("not made with" in w for w in resumed.warnings)  # the same settings
    assert [e.step for e in seen if e.kind == "step"] == [5, 6, 7, 8]
    assert [m.epoch for m in resumed.epochs] == [1, 2]
    assert [json.loads(line)["epoch"] for line in log_path.open()] == [1, 2]  # once each
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = load_model(straight.model_path)(x), load_model(resumed.model_path)(x)
    assert torch.allclose(a, b, atol=1e-5)  # the resumed run is the same run
    # a fresh run in an old run's folder (its checkpoint gone) starts a fresh log
    (tmp_path / "a" / "checkpoint.pt").unlink()
    train(_tiny(tmp_path, tmp_path / "data", out_dir=str(tmp_path / "a"), epochs=1))
    assert [json.loads(line)["epoch"] for line in (tmp_path / "a" / "train_log.jsonl").open()] == [1]


@pytest.mark.parametrize("layout", ["singletons", "one_class"])
def test_a_run_that_cannot_form_triplets_fails_clearly(tmp_path, layout):
    if layout == "singletons":
        for c in range(4):
            _write_images(tmp_path / "classes" / f"c{c}", 1, seed=c)
    else:
        _write_images(tmp_path / "classes" / "only", 6)
    config = _tiny(tmp_path, tmp_path / "classes", data="classes")
    with pytest.raises(TrainingError, match="cannot form triplets"):
        train(config)


def test_train_writes_the_onnx_model_that_embeds_like_the_weights(trained):
    # train() from Python gives a usable ONNX model, not only the CLI
    config, result, events = trained
    assert result.onnx_path == result.model_path.with_name("model.onnx")
    assert result.onnx_path.is_file() and str(result.onnx_path) in events[-1].message
    import onnxruntime as ort

    session = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["simsearch_model_id"] == result.model_sha256
    pictures = np.stack([np.asarray(_picture(np.random.default_rng(i)).resize((64, 64)))
                         for i in range(3)])
    model = load_model(result.model_path)
    mean = torch.tensor(model.config.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.config.std).view(1, 3, 1, 1)
    x = (torch.from_numpy(pictures).permute(0, 3, 1, 2).float() / 255.0 - mean) / std
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    got = session.run(None, {"images": pictures.astype(np.uint8)})[0]
    assert np.all((got * expected).sum(1) > 0.999)


# --- cross-batch memory and view recipes ------------------------------------------------------

def test_memory_mines_the_closest_negative_farther_than_the_positive():
    from simsearch.train.memory import EmbeddingMemory

    def unit(*angles):
        a = torch.tensor(angles, dtype=torch.float32)
        return torch.stack([torch.cos(a), torch.sin(a)], dim=1)

    memory = EmbeddingMemory(4)
    # remembered: label 7 at 0.05 rad (the anchor's own label: never a negative), label 8 at
    # 0.1 rad (closer than the positive: not semi-hard), label 9 at 0.3 and label 10 at 0.6 rad
    memory.push(unit(0.05, 0.1, 0.3, 0.6), torch.tensor([7, 8, 9, 10]))
    batch, labels = unit(0.0, 0.2, 3.0, 3.1), torch.tensor([7, 7, 5, 5])
    anchors, positives, slots = memory.mine(batch, labels)
    assert anchors.tolist() == [0, 1, 2, 3] and positives.tolist() == [1, 0, 3, 2]
    # anchor 0 (positive 0.2 rad away): label 9 at 0.3 rad; anchor 1 at 0.2 rad sees label 9
    # only 0.1 rad away, closer than its positive, so it gets label 10
    assert slots.tolist()[:2] == [2, 3]
    loss = memory.triplet_loss(batch.clone().requires_grad_(True), labels, margin=0.25)
    assert loss is not None and float(loss.detach()) > 0
    # a ring: the oldest make room, and labels go with their vectors
    memory.push(unit(1.0, 1.1, 1.2), torch.tensor([1, 2, 3]))
    assert memory.filled == 4 and memory.labels.tolist() == [1, 2, 3, 10]


def test_empty_memory_adds_nothing():
    from simsearch.train.memory import EmbeddingMemory
    memory = EmbeddingMemory(8)
    assert memory.triplet_loss(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]), 0.25) is None
    with pytest.raises(TrainingError):
        EmbeddingMemory(0)


def test_ceiling_loss_bounds_other_labels_in_the_batch_and_the_memory():
    from simsearch.train.losses import CeilingLoss
    from simsearch.train.memory import Remembered
    x = F.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(3)), dim=1)
    x[1] = F.normalize(x[0] + 0.1 * x[1], dim=0)   # label 0's look-alike of label 1
    x[3] = F.normalize(x[2] + 0.1 * x[3], dim=0)   # two views of label 2: never a negative pair
    labels = torch.tensor([0, 1, 2, 2, 3, 3])
    bank = F.normalize(torch.stack([x[4] + 0.05 * x[5], x[2] + 0.02 * x[0], x[3]]), dim=1)
    bank_labels = torch.tensor([9, 2, 8])            # the second is label 2's own: never a negative
    ceiling = 0.6
    expected = []
    for i in range(6):
        for j in range(i + 1, 6):
            if labels[i] != labels[j]:
                expected.append(float(x[i] @ x[j]))
        for j in range(3):
            if labels[i] != bank_labels[j]:
                expected.append(float(x[i] @ bank[j]))
    over = [c - ceiling for c in expected if c > ceiling]
    assert over and float(x[2] @ x[3]) > ceiling and float(x[2] @ bank[1]) > ceiling
    result = CeilingLoss(ceiling).compute(x, labels, Remembered(bank, bank_labels))
    assert result.terms == len(expected) and result.active_fraction == len(over) / len(expected)
    assert float(result.loss) == pytest.approx(sum(over) / len(over), abs=1e-5)
    # the batch alone leaves the memory's pairs out; nothing above the ceiling gives 0 with a graph
    alone = CeilingLoss(ceiling).compute(x, labels)
    assert alone.terms == 13  # the 15 pairs of 6 less the two of one label
    y = torch.eye(4, requires_grad=True)
    zero = CeilingLoss(ceiling).compute(y, torch.arange(4))
    assert zero.active_fraction == 0.0 and float(zero.loss.detach()) == 0.0 and zero.loss.requires_grad
    with pytest.raises(TrainingError, match="bank"):
        CeilingLoss(ceiling).compute(x, labels, Remembered(bank[:, :4], bank_labels))
    with pytest.raises(TrainingError, match="ceiling"):
        CeilingLoss(1.0)
    with pytest.raises(TrainingError, match="negative_ceiling"):
        TrainConfig(data_dir="x", negative_ceiling=1.0)
    with pytest.raises(TrainingError, match="ceiling_weight"):
        TrainConfig(data_dir="x", ceiling_weight=2.0)  # weighs a term that is off
    with pytest.raises(TrainingError, match="memory_weight"):
        TrainConfig(data_dir="x", memory_weight=2.0)


def test_floor_loss_lifts_views_of_one_label_only():
    from simsearch.train.losses import FloorLoss
    x = F.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(4)), dim=1)
    x[1] = F.normalize(x[0] + 0.2 * x[1], dim=0)    # label 0's two views: close
    x[5] = F.normalize(x[4] + 3.0 * x[5], dim=0)    # label 2's two views: far apart
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    floor = 0.9
    same = [float(x[i] @ x[j]) for i, j in ((0, 1), (2, 3), (4, 5))]
    under = [floor - c for c in same if c < floor]
    assert same[0] > floor and len(under) == 2       # only the far pairs count
    x.requires_grad_(True)
    result = FloorLoss(floor).compute(x, labels)
    assert result.terms == 3 and result.active_fraction == pytest.approx(2 / 3)
    assert float(result.loss.detach()) == pytest.approx(sum(under) / len(under), abs=1e-5)
    result.loss.backward()
    # a gradient step pulls label 2's views together and leaves label 0's (over the floor) alone
    assert float(x.grad[0].abs().sum()) == 0.0 and float(x.grad[4].abs().sum()) > 0
    step = F.normalize(x.detach() - 0.1 * x.grad, dim=1)
    assert float(step[4] @ step[5]) > same[2]
    # nothing under the floor gives 0 with a graph; the floor lies in (0, 1)
    y = torch.eye(4, requires_grad=True)
    zero = FloorLoss(0.5).compute(torch.cat([y[:2], y[:2]]), torch.tensor([0, 1, 0, 1]))
    assert zero.active_fraction == 0.0 and float(zero.loss.detach()) == 0.0 and zero.loss.requires_grad
    with pytest.raises(TrainingError, match="floor"):
        FloorLoss(1.0)
    with pytest.raises(TrainingError, match="positive_floor"):
        TrainConfig(data_dir="x", positive_floor=1.0)
    with pytest.raises(TrainingError, match="floor_weight"):
        TrainConfig(data_dir="x", floor_weight=2.0)  # weighs a term that is off


def test_ceiling_loss_pushes_look_alikes_under_the_ceiling():
    from simsearch.train.losses import CeilingLoss
    pair = torch.tensor([[1.0, 0.1, 0.0], [1.0, -0.1, 0.05]], requires_grad=True)
    labels, loss_fn = torch.tensor([0, 1]), CeilingLoss(0.8)
    first = float(F.cosine_similarity(pair[0], pair[1], dim=0).detach())
    optimizer = torch.optim.SGD([pair], lr=0.5)
    for _ in range(60):
        optimizer.zero_grad()
        loss_fn(pair, labels).backward()
        optimizer.step()
    last = float(F.cosine_similarity(pair[0], pair[1], dim=0).detach())
    assert first > 0.95 and last <= 0.81


def test_the_ceiling_term_is_in_each_steps_loss(tmp_path):
    _write_images(tmp_path / "data", 32, seed=6)
    seen = []
    train(_tiny(tmp_path, tmp_path / "data", epochs=1, negative_ceiling=0.5, ceiling_weight=2.0),
          progress=seen.append)
    steps = [e for e in seen if e.kind == "step"]
    assert len(steps) == 4 and all(e.ceiling > 0 for e in steps)
    for e in steps:  # no memory: the loss is the triplet, KoLeo and ceiling terms, weighted
        assert e.loss == pytest.approx(e.main_loss + 0.5 * e.koleo + 2.0 * e.ceiling, rel=1e-5)


def test_the_floor_term_is_in_each_steps_loss(tmp_path):
    _write_images(tmp_path / "data", 32, seed=7)
    seen = []
    train(_tiny(tmp_path, tmp_path / "data", epochs=1, positive_floor=0.99, floor_weight=3.0),
          progress=seen.append)
    steps = [e for e in seen if e.kind == "step"]
    assert len(steps) == 4 and all(e.floor > 0 for e in steps) and all(e.ceiling is None for e in steps)
    for e in steps:  # no memory, no ceiling: the triplet, KoLeo and floor terms, weighted
        assert e.loss == pytest.approx(e.main_loss + 0.5 * e.koleo + 3.0 * e.floor, rel=1e-5)


def test_view_recipes_keep_copy_unchanged_and_refuse_unknown_names():
    import random as _random
    from simsearch.config import VIEW_RECIPE_NAMES
    from simsearch.edits import VIEW_RECIPES, random_view
    assert set(VIEW_RECIPES) == set(VIEW_RECIPE_NAMES)
    img = _picture(np.random.default_rng(0), (120, 90))
    default = random_view(img, _random.Random(4), 48)
    named = random_view(img, _random.Random(4), 48, "copy")
    assert np.array_equal(np.asarray(default), np.asarray(named))
    heavy = random_view(img, _random.Random(4), 48, "copy-heavy")
    assert heavy.size == (48, 48) and heavy.mode == "RGB"
    with pytest.raises(ValueError, match="unknown view recipe"):
        random_view(img, _random.Random(4), 48, "nope")
    with pytest.raises(TrainingError, match="views"):
        TrainConfig(data_dir="x", views="nope")
    with pytest.raises(TrainingError, match="memory"):
        TrainConfig(data_dir="x", memory=64, loss="infonce")


def test_a_run_with_memory_and_heavy_views_trains_and_resumes(tmp_path):
    _write_images(tmp_path / "data", 32, seed=6)
    config = _tiny(tmp_path, tmp_path / "data", out_dir=str(tmp_path / "m"), memory=24,
                   views="copy-heavy", negative_ceiling=0.5)
    seen = []
    result = train(config, progress=seen.append)
    assert result.steps == 8 and all(np.isfinite(m.loss) for m in result.epochs)
    saved = json.loads((tmp_path / "m" / "train_config.json").read_text())
    assert saved["memory"] == 24 and saved["views"] == "copy-heavy"
    assert saved["negative_ceiling"] == 0.5
    # the term is in every step's loss, and a random-init network (one tight cone) is above 0.5
    held = [e.ceiling for e in seen if e.kind == "step"]
    assert len(held) == 8 and all(h is not None and h > 0 for h in held)
    # a resumed run refills the memory, and one resumed with other settings says which
    (tmp_path / "m" / "model.safetensors").unlink()
    resumed = train(_tiny(tmp_path, tmp_path / "data", out_dir=str(tmp_path / "m"), memory=24,
                          views="copy-heavy", resume=True, epochs=3))
    assert resumed.resumed_from_step == 8 and resumed.steps == 12
    assert any("negative_ceiling 0.5 -> 0.0" in w and "epochs 2 -> 3" in w for w in resumed.warnings)


def test_a_redrawn_picture_gives_both_of_its_views_as_line_art(tmp_path, monkeypatch):
    import dataclasses as _dc
    import random as _random
    from simsearch.edits import VIEW_RECIPES
    # every picture redrawn, and only steps that keep it grey after it: each view is black and white
    monkeypatch.setitem(VIEW_RECIPES, "all-lineart", _dc.replace(
        VIEW_RECIPES["copy"], crop_p=0.0, weights={"flip": 1.0, "grayscale": 1.0, "blur": 1.0}, lineart_p=1.0))
    import simsearch.train.datasets as datasets
    drawn = []  # each item's picture is redrawn once, before both of its views are cut

    def style(img, rng, recipe):
        drawn.append(recipe)
        return picture_style(img, rng, recipe)

    picture_style = datasets.picture_style
    monkeypatch.setattr(datasets, "picture_style", style)
    _write_images(tmp_path / "L", 3)
    data = UnlabeledDataset(tmp_path / "L", size=32, recipe="all-lineart")
    plain = UnlabeledDataset(tmp_path / "L", size=32, recipe="copy")
    for index in range(3):
        views = data.views(index, _random.Random(index))
        assert len(views) == 2 and drawn == ["all-lineart"] * (index + 1)
        for v in views:  # grey, mostly pure black or white (the squash to 32 px and the blur blend edges)
            assert (v.max(axis=2) - v.min(axis=2)).max() == 0
            assert ((v < 40) | (v > 215)).mean() > 0.6
        colour = plain.views(index, _random.Random(index))
        assert any((v.max(axis=2) - v.min(axis=2)).max() > 0 for v in colour)
        drawn.pop()


def test_validation_is_the_same_whatever_the_runs_seed(tmp_path):
    # two runs differing only in --seed are validated on the same images and the same copies
    _write_images(tmp_path / "data", 12, seed=8)
    sets = [load_validation(TrainConfig(data_dir=str(tmp_path / "data"), val_dir=str(tmp_path / "data"),
                                        input_size=32, seed=seed, val_max=8), None, []) for seed in (0, 11)]
    assert sets[0].paths == sets[1].paths and len(sets[0].paths) == 8
    assert np.array_equal(sets[0].queries, sets[1].queries)
    from simsearch.train.trainer import _datasets
    held = [_datasets(TrainConfig(data_dir=str(tmp_path / "data"), input_size=32, seed=seed,
                                  val_fraction=0.25))[1] for seed in (0, 11)]
    assert held[0] == held[1] and len(held[0]) == 3


def test_resuming_a_run_validated_on_other_copies_says_so(tmp_path):
    # a checkpoint from before VALIDATION_SEED (validation seeded by --seed) resumes with a warning
    _write_images(tmp_path / "data", 24, seed=9)
    out = tmp_path / "m"
    config = dict(out_dir=str(out), seed=3, val_fraction=0.25)
    train(_tiny(tmp_path, tmp_path / "data", **config, epochs=1))
    resumed = train(_tiny(tmp_path, tmp_path / "data", **config, epochs=2, resume=True))
    assert not any("validation seeded" in w for w in resumed.warnings)
    blob = torch.load(out / "checkpoint.pt", weights_only=True)
    state = json.loads(blob["state"])
    del state["validation_seed"]
    blob["state"] = json.dumps(state)
    torch.save(blob, out / "checkpoint.pt")
    again = train(_tiny(tmp_path, tmp_path / "data", **config, epochs=3, resume=True))
    assert any("validation seeded 3, now 0" in w and "held-out share changed" in w for w in again.warnings)


def test_the_frames_recipe_adds_a_look_alike_with_its_own_label(tmp_path):
    # about one item in four gives four views: two of its picture and two of another picture
    # (never itself) set into the same frame, each pair with its own picture's label
    import random as _random
    from simsearch.train.datasets import build_batch
    _write_images(tmp_path / "F", 12, seed=5)
    data = UnlabeledDataset(tmp_path / "F", size=32, recipe="copy-heavy-lowres-frames")
    plain = UnlabeledDataset(tmp_path / "F", size=32, recipe="copy-heavy-lowres")
    framed = 0
    for seed in range(300):
        index = seed % 12
        views, labels = data.labelled_views(index, _random.Random(seed))
        assert all(v.shape == (32, 32, 3) and v.dtype == np.uint8 for v in views)
        if len(views) == 2:
            assert labels == [index] * 2
            continue
        framed += 1
        assert len(views) == 4 and labels[:2] == [index] * 2
        assert labels[2] == labels[3] != index and 0 <= labels[2] < 12
    assert 0.18 < framed / 300 < 0.32
    half = UnlabeledDataset(tmp_path / "F", size=32, recipe="copy-heavy-lowres-frames-half")
    framed_half = sum(len(half.labelled_views(seed % 12, _random.Random(seed))[0]) == 4
                      for seed in range(300))
    assert 0.42 < framed_half / 300 < 0.58
    # other recipes: the item's own views, unchanged, with its label
    views, labels = plain.labelled_views(3, _random.Random(7))
    assert labels == [3, 3] and all(np.array_equal(a, b) for a, b in
                                    zip(views, plain.views(3, _random.Random(7))))
    batch = build_batch(data, list(range(12)), seed=0, step=0, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert batch.x.shape[0] == batch.labels.shape[0] == 24
    # every label has one pair of views: a look-alike brought in is none of the batch's items,
    # nor brought twice, so a picture never meets its own (perhaps inked) framed copy; a batch
    # of all 12 pictures has none left to bring
    assert set(np.bincount(batch.labels.numpy())) == {2}
    brought = 0
    for step in range(20):
        half_batch = build_batch(data, list(range(0, 12, 2)), seed=0, step=step, mean=(0.5,) * 3,
                                 std=(0.5,) * 3)
        counts = np.bincount(half_batch.labels.numpy())
        assert set(counts[counts > 0]) == {2}
        brought += (counts > 0).sum() - 6
    assert brought >= 10
    # and a run trains on it: batches of uneven size, look-alikes in the memory too
    result = train(_tiny(tmp_path, tmp_path / "F", out_dir=str(tmp_path / "fr"), memory=24,
                         views="copy-heavy-lowres-frames", negative_ceiling=0.5, epochs=2))
    assert result.steps == 2 and all(np.isfinite(m.loss) for m in result.epochs)
    # the log's views per second counts the views built: a framed item gives four, not two
    built = sum(round(m.views_per_s * m.seconds) for m in result.epochs)
    assert built > result.steps * 8 * 2 and built % 2 == 0
