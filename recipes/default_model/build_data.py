"""Build the image caches for the default model from the packages fetched by fetch_data.sh.

    python recipes/default_model/build_data.py
    python recipes/default_model/build_data.py --check   # only verify train/ and val/ (train.sh)
    python recipes/default_model/build_data.py --first-survey    # the build stages 5-6 trained on
    python recipes/default_model/build_data.py --first-survey --skip 0ad-data   # stages 1-4's

Writes, under data/ (git-ignored):
  train/            training images, JPEG q90, short side <= 256, long side <= 512
  val/              ~800 images held out from the same pool by a seeded hash (training-time validation)
  eval/originals/   up to ~300 evaluation images from wallpaper packages and tuxpaint-stamps, short
                    side <= 512; used only by benchmarks, never mixed into train/val
  eval/distinct/    the distinct-pictures set (see choose_distinct): different pictures only, from
                    the same evaluation packages, to count the false groups of dedupe
  manifest.json     per-package version, licence, kept/dropped counts, decontamination drops
  cache/            per-image decode results (resumable: a rerun only decodes new files)

Filters follow the caveats of /work/shared/TRAINING-DATA.md: texture channel maps by name and
colour, small and flat images, per-folder caps after the size filter, pHash dedupe, a per-package
share cap, and decontamination against every evaluation-package image.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import sys
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"
SEED = 20250601
WORKERS = 2

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tga", ".bmp", ".dds", ".webp")
EVAL_NAME_MARKERS = ("wallpaper", "backgrounds", "desktop-base", "tuxpaint-stamps")
MIN_SHORT_SIDE = 128
MAX_PIXELS = 40_000_000  # larger images are skipped as possible decompression bombs
FLAT_STD = 12.0
TRAIN_SHORT, EVAL_SHORT = 256, 512
DEDUPE_HAMMING = 6
# Evaluation originals must be distinct pictures: none within the Hamming distance at which the usual
# hash-based duplicate finders (and our pHash baseline) call two images duplicates.
EVAL_DEDUPE_HAMMING = 10
DECONTAMINATE_HAMMING = 8
PACKAGE_SHARE = 0.15
PACKAGE_SHARE_OVERRIDES = {"oxygen-icon-theme": 0.03, "sweethome3d-furniture": 0.03}
DEFAULT_FOLDER_CAP = 400
VAL_COUNT = 800
# Packages added after the first default model: training only, so that val/ stays the set every
# earlier stage was measured and calibrated on (a new package's images would otherwise take val
# places by their hash and push measured images into train/).
# The packages of the second survey (session 11: Debian main packages with images that the first
# survey, /work/shared/TRAINING-DATA.md, did not list) are training-only for the same reason.
SECOND_SURVEY = frozenset({
    "berusky2-data", "blobwars-data", "boswars-data", "castle-game-engine-doc", "cataclysm-dda-data",
    "cube2-data", "flightgear-data-base", "flightgear-data-models", "freeciv-data", "freecol",
    "games-thumbnails", "krank", "libjxl-testdata", "lincity-ng-data", "mandelbulber2-data",
    "marsshooter-data", "mypaint-data-extras", "nexuiz-data", "pingus-data", "supertux-data",
    "unknown-horizons", "visp-images-data", "warmux-data", "warzone2100-data",
    *(f"wesnoth-1.16-{campaign}" for campaign in (
        "did", "dm", "dw", "ei", "httt", "l", "low", "nr", "sof", "sotbe", "thot", "trow", "tsg", "utbs")),
})
TRAIN_ONLY_PACKAGES = {"0ad-data", *SECOND_SURVEY}
EVAL_COUNT = 300
# Distinct pictures among the stamps: every stamp (clip art that often differs in small ways:
# the sign-language letters and digits, animals of one kind, houses, flags), but one style per
# letter (the filled letters, not also their outlines) and never a file whose name marks it as a
# variant of another (a mirrored copy, a second version). The digit, operator and coin stamps
# are below MIN_SHORT_SIDE (32-99 px), so they are not in it.
DISTINCT_STAMP_SKIP = re.compile(r"/outlined/")

# Non-picture texture channels: normal, specular, gloss, AO, height, masks, glow, team colours.
CHANNEL_STEM = re.compile(
    r"(normal|normals|[_\-.](n|nm|norm|s|spec|specular|gloss|ao|h|height|bump|mask|glow|g|local"
    r"|luma|pants|shirt|reflect|rough|roughness|metal|metallic|disp|occ|emissive|ddn))$")
CHANNEL_FOLDERS = {"normal", "normals", "spec", "specular", "ao"}
FONT_ATLAS = re.compile(r"/fonts/[^/]+\.png\.cached\.dds$")  # 0ad's glyph sheets
OTHER_LANGUAGE = re.compile(r"/doc/HTML/(?!en/)[^/]+/")

PROSE_LICENCES = (
    ("public-domain", r"public domain"),
    ("GPL-2", r"GPL-2|General Public License,? version 2"),
    ("GPL-3", r"GPL-3|General Public License,? version 3"),
    ("CC-BY-SA", r"CC-BY-SA|Attribution-ShareAlike"),
)

Image.MAX_IMAGE_PIXELS = MAX_PIXELS


@dataclasses.dataclass
class Candidate:
    """One image file of a package, with the decisions taken about it."""
    package: str
    path: str  # relative to data/
    width: int = 0
    height: int = 0
    phash: int = 0
    dropped: str = ""  # reason, empty while kept

    @property
    def short_side(self) -> int:
        return min(self.width, self.height)

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{SEED}:{self.path}".encode()).hexdigest()

    @property
    def out_name(self) -> str:
        return f"{self.package}__{hashlib.sha256(self.path.encode()).hexdigest()[:8]}.jpg"


def refuse_evaluation_package(package: str) -> None:
    """The exclusion rule: evaluation packages must never reach train/ or val/."""
    if any(marker in package for marker in EVAL_NAME_MARKERS):
        raise RuntimeError(
            f"refusing to use {package!r} for training or validation: packages whose name "
            f"contains {', '.join(EVAL_NAME_MARKERS)} are reserved for evaluation "
            "(see /work/shared/TRAINING-DATA.md, 'Exclusion rule')")


def check_training_folders(folders: tuple[Path, ...] = (DATA / "train", DATA / "val")) -> int:
    """The exclusion rule again, on what is about to be trained on: every file in train/ and val/
    is named PACKAGE__HASH.jpg, so a file from an evaluation package shows in its name (the
    library trains on whatever it is given; this recipe keeps its evaluation set clean itself).
    Returns the number of files checked."""
    checked = 0
    for folder in folders:
        if not folder.is_dir():
            raise SystemExit(f"{folder} is missing; run: python recipes/default_model/build_data.py")
        for entry in os.scandir(folder):
            refuse_evaluation_package(entry.name.split("__", 1)[0])
            checked += 1
    return checked


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- scanning ---------------------------------------------------------------------------------

def packages_in(tree: Path) -> list[str]:
    if not tree.is_dir():
        raise SystemExit(f"{tree} is missing; run: bash recipes/default_model/fetch_data.sh")
    return sorted(p.name for p in tree.iterdir() if (p / ".extracted").exists())


def scan(tree: Path, package: str) -> list[Candidate]:
    """Image files of one extracted package, with channel maps and other languages dropped by name."""
    found = []
    for folder, _, files in os.walk(tree / package):
        for name in sorted(files):
            full = Path(folder) / name
            if not name.lower().endswith(IMAGE_SUFFIXES) or full.is_symlink():
                continue
            rel = full.relative_to(DATA).as_posix()
            found.append(Candidate(package, rel, dropped=name_drop_reason(rel)))
    return found


def name_drop_reason(rel: str) -> str:
    lower = rel.lower()
    stem = lower.rsplit("/", 1)[-1]
    while "." in stem and "." + stem.rsplit(".", 1)[1] in IMAGE_SUFFIXES + (".cached",):
        stem = stem.rsplit(".", 1)[0]
    if CHANNEL_STEM.search(stem) or CHANNEL_FOLDERS & set(lower.split("/")[:-1]):
        return "channel_map_name"
    if OTHER_LANGUAGE.search(rel):
        return "other_language"
    if FONT_ATLAS.search(lower):
        return "font_atlas"
    return ""


def probe(path: str) -> tuple[int, int, str]:
    """Header-only size read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(DATA / path) as im:
                return im.width, im.height, ""
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as e:
        return 0, 0, f"{type(e).__name__}: {e}"


def folder_group(c: Candidate) -> tuple[str, int]:
    """Folder cap: animation/rotation frames and filter examples are near-duplicates of each other."""
    folder = c.path.rsplit("/", 1)[0]
    if c.package == "gimp-help-en" and "/filters/examples" in c.path:
        return "gimp-filter-examples", 20
    if c.package in ("widelands-data", "fillets-ng-data"):
        return folder, 6 if c.package == "widelands-data" else 40
    if c.package == "freedroidrpg-data":
        return folder, 4
    if c.package == "0ad-data" and "/animated/" in c.path:
        return folder, 4  # water animation frames
    if c.package.startswith("wesnoth") and "/portraits/" not in c.path:
        return folder, 6
    if c.package == "unknown-horizons":
        return folder, 4  # one folder per animation and direction: frames of one picture
    if c.package == "castle-game-engine-doc":
        return folder, 6  # the examples' flame and sprite-sheet frames
    return folder, DEFAULT_FOLDER_CAP


def apply_folder_caps(candidates: list[Candidate]) -> None:
    """Keep evenly spaced files (by name) of each over-full folder; frames far apart differ most."""
    groups: dict[tuple[str, int], list[Candidate]] = defaultdict(list)
    for c in candidates:
        if not c.dropped:
            groups[folder_group(c)].append(c)
    for (_, cap), members in groups.items():
        if len(members) > cap:
            keep = {round(i * (len(members) - 1) / (cap - 1)) for i in range(cap)} if cap > 1 else {0}
            for i, c in enumerate(members):
                if i not in keep:
                    c.dropped = "folder_cap"


# ---- decoding (worker processes) --------------------------------------------------------------

def to_rgb(im: Image.Image) -> Image.Image:
    """Any mode to RGB, alpha composited on white."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(im, dtype=np.float32)
        im = Image.fromarray((a * (255.0 / max(float(a.max()), 1.0))).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA", "RGBa") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return im.convert("RGB")


def fit(im: Image.Image, short_max: int) -> Image.Image:
    """Scale so the short side is <= short_max, then centre-crop the long side to 2 * short_max."""
    w, h = im.size
    scale = min(1.0, short_max / min(w, h))
    if scale < 1.0:
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
        im = im.resize((w, h), Image.BICUBIC, reducing_gap=2.0)
    long_max = 2 * short_max
    if max(w, h) > long_max:
        left, top = (w - min(w, long_max)) // 2, (h - min(h, long_max)) // 2
        im = im.crop((left, top, left + min(w, long_max), top + min(h, long_max)))
    return im


def decode(job: tuple[str, str, int]) -> dict:
    """Decode, check, resize, hash and write one image; returns a JSON-able record."""
    path, out_path, short_max = job
    record: dict = {"path": path}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(DATA / path) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise ValueError(f"{im.width}x{im.height} exceeds {MAX_PIXELS} pixels")
                im.draft("RGB", (short_max * 2, short_max * 2))
                img = fit(to_rgb(im), short_max)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as e:
        record["error"] = f"{type(e).__name__}: {e}"
        return record
    grey = np.asarray(img.convert("L").resize((64, 64), Image.BILINEAR), dtype=np.float32)
    mean = np.asarray(img.resize((32, 32), Image.BILINEAR), dtype=np.float32).reshape(-1, 3).mean(0)
    record["std"] = round(float(grey.std()), 2)
    record["normal_colour"] = bool(abs(mean[0] - 128) < 30 and abs(mean[1] - 128) < 30 and mean[2] > 190)
    record["phash"] = str(imagehash.phash(img))
    record["phash_flip"] = str(imagehash.phash(img.transpose(Image.FLIP_LEFT_RIGHT)))
    if record["std"] >= FLAT_STD and not record["normal_colour"]:
        out = DATA / out_path
        img.save(out.with_suffix(".tmp"), "JPEG", quality=90)
        os.replace(out.with_suffix(".tmp"), out)
    return record


def decode_all(candidates: list[Candidate], cache_name: str, short_max: int) -> dict[str, dict]:
    """Decode the kept candidates in a worker pool; results are appended to a JSONL for resuming."""
    cache_dir = DATA / "cache" / cache_name
    cache_dir.mkdir(parents=True, exist_ok=True)
    records_file = DATA / "cache" / f"{cache_name}.jsonl"
    records: dict[str, dict] = {}
    if records_file.exists():
        for line in records_file.read_text().splitlines():
            r = json.loads(line)
            records[r["path"]] = r
    jobs = [(c.path, f"cache/{cache_name}/{c.out_name}", short_max) for c in candidates
            if not c.dropped and not cached(records.get(c.path), cache_dir / c.out_name)]
    log(f"{cache_name}: {len(jobs)} images to decode ({len(records)} cached)")
    start = time.time()
    with multiprocessing.get_context("fork").Pool(WORKERS) as pool, records_file.open("a") as out:
        for i, r in enumerate(pool.imap_unordered(decode, jobs, chunksize=8), 1):
            records[r["path"]] = r
            out.write(json.dumps(r) + "\n")
            if "error" in r:
                log(f"skipping {r['path']}: {r['error']}")
            if i % 500 == 0 or i == len(jobs):
                rate = i / (time.time() - start)
                log(f"{cache_name}: {i}/{len(jobs)} decoded, {rate:.0f}/s, "
                    f"{(len(jobs) - i) / rate / 60:.1f} min left")
    return records


def cached(record: dict | None, out: Path) -> bool:
    if record is None:
        return False
    return "error" in record or record["std"] < FLAT_STD or record["normal_colour"] or out.exists()


def apply_decode_results(candidates: list[Candidate], records: dict[str, dict]) -> None:
    for c in candidates:
        r = records.get(c.path)
        if c.dropped or r is None:
            continue
        if "error" in r:
            c.dropped = "unreadable"
        elif r["normal_colour"]:
            c.dropped = "channel_map_colour"
        elif r["std"] < FLAT_STD:
            c.dropped = "flat"
        else:
            c.phash = int(r["phash"], 16)


# ---- selection --------------------------------------------------------------------------------

def probe_sizes(candidates: list[Candidate], label: str) -> None:
    todo = [c for c in candidates if not c.dropped]
    log(f"{label}: reading headers of {len(todo)} files")
    with multiprocessing.get_context("fork").Pool(WORKERS) as pool:
        for c, (w, h, error) in zip(todo, pool.imap(probe, [c.path for c in todo], chunksize=64)):
            c.width, c.height = w, h
            if error:
                log(f"skipping {c.path}: {error}")
                c.dropped = "unreadable"
            elif min(w, h) < MIN_SHORT_SIDE:
                c.dropped = "small"


def dedupe(candidates: list[Candidate], radius: int) -> None:
    """Greedy pHash dedupe: larger images first, then by seeded hash; later near-copies dropped."""
    # a training-only package's image never displaces another package's (which may be in val/)
    alive = sorted((c for c in candidates if not c.dropped),
                   key=lambda c: (c.package in TRAIN_ONLY_PACKAGES, -c.short_side, c.key))
    kept = np.zeros(len(alive), dtype=np.uint64)
    n = 0
    for c in alive:
        h = np.uint64(c.phash)
        if n and int(np.bitwise_count(kept[:n] ^ h).min()) <= radius:
            c.dropped = "duplicate"
        else:
            kept[n] = h
            n += 1


def decontaminate(candidates: list[Candidate], eval_hashes: np.ndarray,
                  eval_paths: list[str]) -> list[dict]:
    """Drop training images within DECONTAMINATE_HAMMING of any evaluation image (or its mirror)."""
    drops = []
    for c in candidates:
        if c.dropped or not len(eval_hashes):
            continue
        d = np.bitwise_count(eval_hashes ^ np.uint64(c.phash))
        j = int(d.argmin())
        if d[j] <= DECONTAMINATE_HAMMING:
            c.dropped = "contamination"
            drops.append({"path": c.path, "package": c.package, "eval_path": eval_paths[j],
                          "hamming": int(d[j])})
    return drops


def package_caps(counts: Counter) -> dict[str, int]:
    """Per-package caps so that no package exceeds its share of the final set (fixed point)."""
    total = sum(counts.values())
    for _ in range(50):
        caps = {p: int(PACKAGE_SHARE_OVERRIDES.get(p, PACKAGE_SHARE) * total) for p in counts}
        new_total = sum(min(n, caps[p]) for p, n in counts.items())
        if new_total == total:
            break
        total = new_total
    return caps


def apply_package_caps(candidates: list[Candidate]) -> None:
    by_package: dict[str, list[Candidate]] = defaultdict(list)
    for c in candidates:
        if not c.dropped:
            by_package[c.package].append(c)
    caps = package_caps(Counter({p: len(v) for p, v in by_package.items()}))
    for p, members in by_package.items():
        for c in sorted(members, key=lambda c: c.key)[caps[p]:]:
            c.dropped = "package_cap"


# ---- output -----------------------------------------------------------------------------------

def split_val(kept: list[Candidate], count: int = VAL_COUNT) -> tuple[list[Candidate], list[Candidate]]:
    """(val, train): the first `count` kept images by their seeded hash, never one of a
    TRAIN_ONLY_PACKAGES package. Adding such a package leaves val/ as it was as long as every
    package that its cap cuts keeps more than the lowest ~3% of its own images by key: the
    larger total raises caps, and a raised cap admits only images whose keys sort after every
    image of their package already kept, while val/ is the lowest ~3% of all keys (checked file
    for file when 0ad-data and the second survey were added; the one package cut then,
    sweethome3d-furniture, kept 68-89% of its images)."""
    kept = sorted(kept, key=lambda c: c.key)
    val = [c for c in kept if c.package not in TRAIN_ONLY_PACKAGES][:count]
    in_val = {c.path for c in val}
    return val, [c for c in kept if c.path not in in_val]


def publish(items: list[tuple[Path, str]], folder: Path) -> None:
    """Replace folder with hard links (or copies) of the cached files, atomically by rename."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for source, name in items:
        try:
            os.link(source, tmp / name)
        except OSError:
            shutil.copyfile(source, tmp / name)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def package_info(tree: Path, package: str) -> dict[str, object]:
    version_file = tree / package / ".version"
    version = version_file.read_text().strip() if version_file.exists() else "unknown"
    licences: list[str] = []
    for copyright_file in sorted((tree / package / "usr/share/doc").glob("*/copyright")):
        for line in copyright_file.read_text(errors="replace").splitlines():
            if line.startswith("License:") and line[8:].strip():
                name = line[8:].strip()
                if name not in licences:
                    licences.append(name)
    if not licences:  # not machine-readable (DEP-5): name what the prose mentions
        files = (tree / package / "usr/share/doc").glob("*/copyright")
        text = " ".join(f.read_text(errors="replace") for f in files)
        licences = [f"{name} (from prose)" for name, pattern in PROSE_LICENCES
                    if re.search(pattern, text, re.I)]
    return {"version": version, "licences": licences or ["unknown: see the package's copyright file"]}


def build_eval() -> tuple[list[Candidate], dict[str, dict]]:
    tree = DATA / "eval-extract"
    candidates = [c for p in packages_in(tree) for c in scan(tree, p)]
    for c in candidates:
        if c.dropped == "channel_map_name":
            c.dropped = ""  # wallpapers named *_s or *_g are still pictures
    probe_sizes(candidates, "eval")
    records = decode_all(candidates, "eval", EVAL_SHORT)
    apply_decode_results(candidates, records)
    dedupe(candidates, EVAL_DEDUPE_HAMMING)
    return candidates, records


def choose_eval(candidates: list[Candidate]) -> list[Candidate]:
    """Wallpapers (mostly photographs) first, then other artwork, then tuxpaint stamps."""
    def tier(c: Candidate) -> int:
        if c.package.startswith("tuxpaint-stamps"):
            return 2
        return 0 if re.search(r"wallpaper|backgrounds", c.path, re.I) else 1
    chosen, groups = [], set()
    for c in sorted((c for c in candidates if not c.dropped), key=lambda c: (tier(c), c.key)):
        if eval_group(c) not in groups:
            groups.add(eval_group(c))
            chosen.append(c)
    return chosen[:EVAL_COUNT]


def eval_group(c: Candidate) -> str:
    """One original per artwork: KDE wallpapers ship each picture cropped to several aspect ratios
    (pHash sees different pictures), desktop-base ships each theme as wallpaper, login, grub and
    boot-splash art, GNOME ships light and dark versions of one picture (adwaita-l, adwaita-d), and
    other packages name one picture at several sizes (Sway_Wallpaper_Blue_2048x1536_Portrait)."""
    if "/contents/" in c.path:
        return c.path.split("/contents/")[0]
    theme = (re.search(r"/([^/]+)-theme/", c.path)
             or re.search(r"/plymouth/themes/([^/]+)/", c.path))
    if theme:
        return f"{c.package}: theme {theme.group(1)}"
    stem, _ = os.path.splitext(c.path)
    stem = re.sub(r"[\s._-]*\d{3,5}[x×]\d{3,5}([\s._-]*(portrait|landscape))?$", "", stem, flags=re.I)
    return re.sub(r"[\s._-]+(d|l|dark|light|day|night)$", "", stem, flags=re.I)


def choose_distinct(candidates: list[Candidate]) -> list[Candidate]:
    """The distinct-pictures set: every evaluation picture that is a different picture from all
    the others. Wallpapers and other artwork: every one left after the evaluation pHash dedupe,
    one per artwork (eval_group: no second crop, size, light/dark or theme variant). Stamps: those
    (but DISTINCT_STAMP_SKIP), one per name, a trailing number or "mirror" marking a variant
    where the name without it is a stamp too (rabbit-2 beside rabbit, dumper_mirror, a flipped
    copy, beside dumper; not flower1 ... flower10). All
    members are more than EVAL_DEDUPE_HAMMING bits apart in pHash (the dedupe before this), so
    no two are copies of one another by the usual hash rule, and their names say they are
    different pictures. Every pair that dedupe groups among them is
    therefore a false pair."""
    def stamp_stem(c: Candidate) -> str:
        return os.path.splitext(c.path.split("/stamps/", 1)[-1])[0].lower()

    alive = sorted((c for c in candidates if not c.dropped), key=lambda c: c.key)
    stems = {stamp_stem(c) for c in alive if c.package.startswith("tuxpaint-stamps")}
    chosen, groups = [], set()
    for c in alive:
        if c.package.startswith("tuxpaint-stamps"):
            stem = stamp_stem(c)
            if DISTINCT_STAMP_SKIP.search(stem):
                continue
            base = re.sub(r"(?<=[a-z])[\s_-]*(\d|mirror)$", "", stem)  # rabbit-2, dumper_mirror
            group = base if base in stems else stem
        else:
            group = eval_group(c)
        if group not in groups:
            groups.add(group)
            chosen.append(c)
    return chosen


def distinct_name(c: Candidate) -> str:
    """PACKAGE__FOLDER_NAME__HASH.jpg: the package first (benchmarks/quality.py splits by it),
    the picture's own name readable in reports."""
    parts = [re.sub(r"[^A-Za-z0-9-]+", "-", p) for p in Path(c.path).with_suffix("").parts[-2:]]
    return f"{c.package}__{'_'.join(parts)}__{hashlib.sha256(c.path.encode()).hexdigest()[:6]}.jpg"


def main(skip: frozenset[str] = frozenset()) -> None:
    start = time.time()
    eval_candidates, eval_records = build_eval()
    eval_hashes, eval_paths = [], []
    for r in eval_records.values():
        if "error" not in r and r["std"] >= FLAT_STD:
            eval_hashes += [int(r["phash"], 16), int(r["phash_flip"], 16)]
            eval_paths += [r["path"], r["path"] + " (mirrored)"]
    eval_chosen = choose_eval(eval_candidates)
    publish([(DATA / "cache/eval" / c.out_name, c.out_name) for c in eval_chosen], DATA / "eval/originals")
    log(f"eval: {len(eval_chosen)} originals, {len(eval_hashes) // 2} images used for decontamination")
    distinct = choose_distinct(eval_candidates)
    publish([(DATA / "cache/eval" / c.out_name, distinct_name(c)) for c in distinct], DATA / "eval/distinct")
    log(f"eval: {len(distinct)} distinct pictures "
        f"({sum(c.package.startswith('tuxpaint-stamps') for c in distinct)} stamps)")

    tree = DATA / "extract"
    extracted = packages_in(tree)
    unknown = skip - set(extracted)
    if unknown:
        raise SystemExit(f"--skip {', '.join(sorted(unknown))}: no such extracted package in {tree}")
    packages = [p for p in extracted if p not in skip]
    for p in packages:
        refuse_evaluation_package(p)
    candidates = [c for p in packages for c in scan(tree, p)]
    probe_sizes(candidates, "train")
    apply_folder_caps(candidates)
    records = decode_all(candidates, "train", TRAIN_SHORT)
    apply_decode_results(candidates, records)
    dedupe(candidates, DEDUPE_HAMMING)
    contamination = decontaminate(candidates, np.array(eval_hashes, dtype=np.uint64), eval_paths)
    apply_package_caps(candidates)

    kept = [c for c in candidates if not c.dropped]
    val, train = split_val(kept)  # both in seeded-hash order
    names = [c.out_name for c in kept]
    assert len(set(names)) == len(names), "output file name collision; widen the hash in out_name"
    for c in kept:
        refuse_evaluation_package(c.package)
    publish([(DATA / "cache/train" / c.out_name, c.out_name) for c in train], DATA / "train")
    publish([(DATA / "cache/train" / c.out_name, c.out_name) for c in val], DATA / "val")
    check_training_folders()

    manifest = build_manifest(candidates, train, val, eval_chosen, contamination, time.time() - start)
    manifest["eval"]["distinct"] = {distinct_name(c): c.path for c in distinct}
    tmp = DATA / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, DATA / "manifest.json")
    log(f"done in {(time.time() - start) / 60:.1f} min: train {len(train)}, val {len(val)}, "
        f"eval {len(eval_chosen)}; see data/manifest.json")


def build_manifest(candidates: list[Candidate], train: list[Candidate], val: list[Candidate],
                   eval_chosen: list[Candidate], contamination: list[dict], seconds: float) -> dict:
    train_set, val_set = {c.path for c in train}, {c.path for c in val}
    packages: dict[str, dict] = {}
    for c in candidates:
        entry = packages.setdefault(c.package, {
            **package_info(DATA / "extract", c.package), "files": 0, "train": 0, "val": 0,
            "dropped": Counter(), "contamination": []})
        entry["files"] += 1
        entry["train"] += c.path in train_set
        entry["val"] += c.path in val_set
        if c.dropped:
            entry["dropped"][c.dropped] += 1
    for d in contamination:
        packages[d["package"]]["contamination"].append(d)
    eval_packages = sorted({c.package for c in eval_chosen})
    return {
        "seed": SEED,
        "built_seconds": round(seconds),
        "settings": {"min_short_side": MIN_SHORT_SIDE, "flat_std": FLAT_STD,
                     "train_short_side": TRAIN_SHORT, "eval_short_side": EVAL_SHORT,
                     "dedupe_hamming": DEDUPE_HAMMING, "eval_dedupe_hamming": EVAL_DEDUPE_HAMMING, "decontaminate_hamming": DECONTAMINATE_HAMMING,
                     "package_share": PACKAGE_SHARE, "package_share_overrides": PACKAGE_SHARE_OVERRIDES},
        "totals": {"train": len(train), "val": len(val), "eval": len(eval_chosen),
                   "files": len(candidates),
                   "dropped": dict(sum((Counter(p["dropped"]) for p in packages.values()), Counter()))},
        "packages": {p: {**e, "dropped": dict(e["dropped"])} for p, e in sorted(packages.items())},
        "eval": {"packages": {p: package_info(DATA / "eval-extract", p) for p in eval_packages},
                 "files": {c.out_name: c.path for c in eval_chosen}},
    }


def skipped(args: list[str], extracted: list[str]) -> frozenset[str]:
    """The packages a build leaves out, from its arguments ([--first-survey] [--skip PACKAGE ...])."""
    first_survey = "--first-survey" in args
    args = [a for a in args if a != "--first-survey"]
    if len(args) % 2 or any(a != "--skip" for a in args[::2]):
        raise SystemExit(f"usage: {sys.argv[0]} [--check | [--first-survey] [--skip PACKAGE ...]]\n"
                         "  --first-survey: without the second survey's packages (SECOND_SURVEY)")
    skip = frozenset(args[1::2])
    return skip | (SECOND_SURVEY & frozenset(extracted)) if first_survey else skip


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        log(f"train/ and val/: {check_training_folders()} files, none from an evaluation package")
    else:
        main(skipped(sys.argv[1:], packages_in(DATA / "extract")))
