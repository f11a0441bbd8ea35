"""Train the default model's stages in order, each from the one before, resumable after a stop.

    python recipes/default_model/stages.py --out runs/default            # what train.sh runs
    python recipes/default_model/stages.py --out runs/default --until 2  # only stages 1 and 2

Stage N writes OUT (stage 1) or OUT-stageN. Rerun after a stop or a kill and each stage is
found in one of three states: finished (its train_log.jsonl reached its epochs: skipped), cut
short (a checkpoint.pt: continued with --resume from the last checkpoint), or not begun. A
stage's weights come from the stage before it, so a later stage never starts before the
earlier one has finished.

`--set name=value` overrides one `simsearch train` option for every stage (`--set epochs=2`
replaces each stage's own epoch count): the tests run the same recipe on a tiny network.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Stage:
    epochs: int
    lr: float
    seed: int
    options: tuple[tuple[str, str], ...] = ()  # `simsearch train` options of this stage alone
    why: str = ""
    build: str = ""  # the data build it trains on: a key of BUILDS (every stage names one)


# The data builds the stages train on, as build_data.py arguments: the first survey's packages
# without 0ad-data, with it, and with the second survey's packages too. 0ad-data's and the second
# survey's images go to train/ only, so val/ is the same 800 images in all three.
BUILDS = {"without 0ad-data": ("--first-survey", "--skip", "0ad-data"), "first survey": ("--first-survey",),
          "second survey": ()}


# Each stage starts from the one before at a lower peak learning rate (a fresh warm-up + cosine
# schedule); see simsearch/models/README.md for what each one bought on validation.
STAGES = (
    Stage(7, 1e-3, 0, why="from random initialisation", build="without 0ad-data"),
    Stage(8, 5e-4, 1, why="validation uAP was still rising when stage 1's schedule ran out",
          build="without 0ad-data"),
    Stage(6, 2.5e-4, 2, why="still rising after stage 2", build="without 0ad-data"),
    Stage(3, 1.25e-4, 4, (("memory", "4096"),),
          why="look-alike negatives mined from the last 4,096 embeddings: beat stage 3 on validation",
          build="without 0ad-data"),
    Stage(3, 6.25e-5, 5, (("memory", "4096"), ("negative-ceiling", "0.75")),
          why="every pair of different pictures held under cosine 0.75, on the first survey's build (0ad-data "
              "added): beat stage 4 on validation, variant originals merged (trials/val-variants.json)",
          build="first survey"),
    Stage(3, 3.125e-5, 6, (("memory", "4096"), ("negative-ceiling", "0.75"), ("views", "copy-heavy-lowres")),
          why="heavier crops, picture-in-picture and turns, and views shrunk and scaled back up: beat "
              "stage 5 on validation, above all small pictures re-saved small (trials/stage6-lowres.json)",
          build="first survey"),
    Stage(3, 3.125e-5, 9, (("memory", "4096"), ("negative-ceiling", "0.75"), ("views", "copy-heavy-lowres")),
          why="stage 6's options on the second survey's build (7,198 more images of 38 more packages): "
              "beat stage 6 on validation, backgrounds from the same images (trials/stage7-second-survey.json)",
          build="second survey"),
    Stage(3, 3.125e-5, 10, (("memory", "4096"), ("negative-ceiling", "0.75"), ("views", "copy-heavy-lowres"),
                            ("positive-floor", "0.85")),
          why="each image's two views lifted over cosine 0.85 (--positive-floor): beat stage 7 on "
              "validation, above all dedupe recall at precision 0.97 and re-saves (trials/stage8-floor.json)",
          build="second survey"),
    Stage(3, 3.125e-5, 11, (("memory", "4096"), ("negative-ceiling", "0.75"), ("views", "copy-heavy-lowres"),
                            ("positive-floor", "0.90")),
          why="the floor raised to 0.90: beat stage 8 on validation with variants merged (uAP, Recall@1, "
              "dedupe recall at precision 0.97 and 0.95; trials/stage9-floor090.json)",
          build="second survey"),
    Stage(3, 3.125e-5, 12, (("memory", "4096"), ("negative-ceiling", "0.75"),
                            ("views", "copy-heavy-lowres-frames"), ("positive-floor", "0.90")),
          why="one item in four brings a look-alike in a shared frame (--views copy-heavy-lowres-frames): "
              "beat stage 9 on validation with variants merged (uAP, Recall@1, dedupe recall at "
              "precision 0.97 and 0.95, re-saves; trials/stage10-frames.json)",
          build="second survey"),
)

# Options every stage shares (the triplet recipe of simsearch/models/README.md).
COMMON = {
    "batch-size": "64", "loss": "triplet", "miner": "semihard", "margin": "0.25", "koleo": "0.5",
    "backbone": "resnet18", "dim": "256", "input-size": "160", "checkpoint-every": "100",
    "workers": "1",
}

# options a stage sets itself: --set cannot change them
RESERVED = {"unlabeled", "val-dir", "out", "resume"}


def _weights(value: str) -> str:
    return value if value in ("random", "default") else str((ROOT / value).resolve())


# what a stage's train_config.json must agree with before the stage is skipped or resumed
CHECKED = {"epochs": int, "lr": float, "seed": int, "init": _weights}


def build_plan(until: int = len(STAGES)) -> list[tuple[int, tuple[str, ...]]]:
    """Runs of consecutive stages that share a data build, as (last stage of the run,
    build_data.py arguments): what train.sh builds before running the stages up to it."""
    plan: list[tuple[int, tuple[str, ...]]] = []
    for number, stage in enumerate(STAGES[:until], start=1):
        if stage.build not in BUILDS:
            raise KeyError(f"stage {number} names no data build ({stage.build!r}); one of {', '.join(BUILDS)}")
        args = BUILDS[stage.build]
        if plan and plan[-1][1] == args:
            plan[-1] = (number, args)
        else:
            plan.append((number, args))
    return plan


def stage_dir(out: Path, number: int) -> Path:
    return out if number == 1 else out.with_name(f"{out.name}-stage{number}")


def finished_epochs(folder: Path) -> int:
    """The last epoch train_log.jsonl records (0 when there is none or it is unreadable)."""
    try:
        lines = (folder / "train_log.jsonl").read_text().splitlines()
        return int(json.loads(lines[-1])["epoch"]) if lines else 0
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def state(folder: Path, epochs: int) -> str:
    if finished_epochs(folder) >= epochs and (folder / "model.safetensors").exists():
        return "finished"
    return "cut short" if (folder / "checkpoint.pt").exists() else "not begun"


def mismatch(folder: Path, options: dict[str, str]) -> str:
    """How the run already in `folder` differs from the stage about to run ('' if it does not):
    a stage is skipped or resumed only when it is the same stage."""
    try:
        made = json.loads((folder / "train_config.json").read_text())
    except (OSError, ValueError):
        return ""
    if not isinstance(made, dict):
        return ""
    return ", ".join(f"{name}={made.get(name)!r}, not {options[name]!r}" for name, kind in CHECKED.items()
                     if name in made and kind(made[name]) != kind(options[name]))


def options(number: int, stage: Stage, out: Path, overrides: dict[str, str]) -> dict[str, str]:
    """The `simsearch train` options of stage `number` (without the folders)."""
    return {**COMMON, "epochs": str(stage.epochs), "lr": repr(stage.lr), "seed": str(stage.seed),
            "init": "random" if number == 1 else str(stage_dir(out, number - 1) / "model.safetensors"),
            **dict(stage.options), **overrides}


def command(number: int, stage: Stage, out: Path, train_dir: Path, val_dir: Path,
            overrides: dict[str, str], resume: bool) -> list[str]:
    args = [sys.executable, "-m", "simsearch.cli", "train", "--unlabeled", str(train_dir),
            "--val-dir", str(val_dir), "--out", str(stage_dir(out, number))]
    for name, value in options(number, stage, out, overrides).items():
        args += [f"--{name}", value]
    return args + (["--resume"] if resume else [])


class StageError(Exception):
    """A stage's folder holds a run made with other options."""


def run_stages(out: Path, train_dir: Path, val_dir: Path, overrides: dict[str, str],
               until: int = len(STAGES)) -> list[str]:
    """Run stages 1..until; returns what was done with each ('finished', 'resumed', 'trained')."""
    done = []
    for number, stage in enumerate(STAGES[:until], start=1):
        folder = stage_dir(out, number)
        wanted = options(number, stage, out, overrides)
        now = state(folder, int(wanted["epochs"]))
        print(f"stage {number} ({folder}): {now}", file=sys.stderr, flush=True)
        differs = mismatch(folder, wanted) if now != "not begun" else ""
        if differs:
            raise StageError(f"{folder} holds a different run ({differs}); move it away, or rerun "
                             "with the options it was made with")
        if now == "finished":
            done.append("finished")
            continue
        subprocess.run(command(number, stage, out, train_dir, val_dir, overrides,
                               resume=now == "cut short"), check=True, cwd=ROOT)
        done.append("resumed" if now == "cut short" else "trained")
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "default")
    parser.add_argument("--train-dir", type=Path, default=ROOT / "data" / "train")
    parser.add_argument("--val-dir", type=Path, default=ROOT / "data" / "val")
    parser.add_argument("--until", type=int, default=len(STAGES), choices=range(1, len(STAGES) + 1),
                        help="the last stage to run")
    parser.add_argument("--last-dir", action="store_true",
                        help="print the folder the last stage writes, and exit (train.sh ships it)")
    parser.add_argument("--builds", action="store_true",
                        help="print, a line each, the last stage trained on a data build and that "
                             "build's build_data.py arguments, and exit (train.sh reads it)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a `simsearch train` option for every stage")
    args = parser.parse_args()
    if args.last_dir:
        print(stage_dir(args.out, args.until))
        return
    if args.builds:
        for until, build in build_plan(args.until):
            print(until, *build)
        return
    overrides = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        name = name.lstrip("-").replace("_", "-")
        if not sep or not name or not value:
            parser.error(f"--set takes NAME=VALUE, not {item!r}")
        if name in RESERVED:
            parser.error(f"--set {name}: the stages set it themselves (use --out, --train-dir, --val-dir)")
        if name in CHECKED:
            try:
                CHECKED[name](value)
            except ValueError:
                parser.error(f"--set {name}={value!r}: not a number")
        overrides[name] = value
    try:
        run_stages(args.out.resolve(), args.train_dir.resolve(), args.val_dir.resolve(), overrides,
                   args.until)
    except StageError as e:
        sys.exit(str(e))
    except subprocess.CalledProcessError as e:
        sys.exit(f"a stage failed (exit {e.returncode}); rerun this command to continue from its "
                 "last checkpoint")


if __name__ == "__main__":
    main()
