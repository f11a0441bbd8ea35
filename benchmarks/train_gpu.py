"""Training on a GPU: does `simsearch train --device cuda` run the default recipe's options end to
end, resume after a kill (on the GPU, and on the CPU from a GPU checkpoint), and how fast is it.

    python benchmarks/train_gpu.py --json benchmarks/results/train_gpu.json [--device cuda]

It writes generated pictures (640 x 480 JPEGs, `simsearch.demo.picture`) to a scratch folder and
runs the CLI as a user would, with stage 7's options (memory 4096, ceiling 0.75,
copy-heavy-lowres views, batch 64, input 160, fine-tuned from the default model):
- speed: views a second over one epoch of `--steps` steps, waiting for data included, the
  epoch's validation pass not (the first run also pays the warm-up), with the recipe's 1
  batch-building thread and with cores - 2 of them, bf16 autocast on (where the device has it)
  and off; and the network's own rate on ready-made batches (forward + backward, channels-last
  as the trainer runs it, no data loading). On CUDA "off" means float32 with PyTorch's defaults
  (TF32 convolutions);
- a kill (SIGKILL) after the first checkpoint, then `--resume` on the same device and, from a
  copy of the killed run, `--resume --device cpu`: both must finish every step;
- the finished model's vectors: PyTorch on the device (bf16 autocast and fp32) against the CPU,
  and its ONNX export through ONNX Runtime on the CPU (and on CUDA when this ONNX Runtime has it).
Every check is reported; the exit status is 1 when one fails. `--device cpu` runs the same
checks without a GPU (to try the script).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from common import ROOT, report, table

RECIPE = ["--init", "default", "--views", "copy-heavy-lowres", "--memory", "4096",
          "--negative-ceiling", "0.75", "--batch-size", "64", "--input-size", "160",
          "--lr", "3.125e-5", "--seed", "9"]


def _write(args: tuple[int, str]) -> None:
    from simsearch.demo import picture

    seed, path = args
    picture(seed).save(path, quality=90)


def pictures(folder: Path, seeds: range, jobs: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(jobs) as pool:
        list(pool.map(_write, [(s, str(folder / f"{s:06d}.jpg")) for s in seeds], chunksize=32))


def train_cmd(data: Path, val: Path, out: Path, device: str, steps: int, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "simsearch.cli", "train", "--unlabeled", str(data), "--val-dir", str(val),
            "--out", str(out), "--device", device, "--epochs", "1", "--steps-per-epoch", str(steps),
            *RECIPE, *extra]


def run(cmd: list[str], log: Path) -> tuple[int, float]:
    t = time.perf_counter()
    with open(log, "ab") as f:
        rc = subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    return rc, time.perf_counter() - t


def epoch_log(out: Path) -> dict:
    lines = (out / "train_log.jsonl").read_text().splitlines()
    return json.loads(lines[-1])


def speed(args, data: Path, val: Path, work: Path, name: str, workers: int, bf16: str) -> dict:
    out = work / name
    log = work / f"{name}.log"
    rc, wall = run(train_cmd(data, val, out, args.device, args.steps,
                             ["--workers", str(workers), "--bf16", bf16]), log)
    row = {"run": name, "workers": workers, "bf16": bf16, "rc": rc, "wall_s": round(wall, 1),
           "bf16_used": "with bf16 autocast" in log.read_text(errors="replace")}
    if rc == 0:
        m = epoch_log(out)
        row.update(views_per_s=round(m["views_per_s"], 1), epoch_s=round(m["seconds"], 1),
                   uap=m["uap"], recall_at_1=m["recall_at_1"], steps=m["step"])
    return row


def kill_and_resume(args, data: Path, val: Path, work: Path, workers: int) -> dict:
    """Kill a run after its first checkpoint; resume it on the device and a copy on the CPU."""
    out = work / "killed"
    steps = min(30, args.images // 64)
    every = max(1, steps // 3)
    cmd = train_cmd(data, val, out, args.device, steps, ["--workers", str(workers), "--checkpoint-every", str(every)])
    with open(work / "train.log", "ab") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    ckpt = out / "checkpoint.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    result = {"checkpoint_before_kill": ckpt.exists(), "killed": proc.returncode == -signal.SIGKILL}
    if not ckpt.exists() or not result["killed"]:
        return result  # not ok: nothing was resumed
    import torch

    result["killed_at_step"] = json.loads(torch.load(ckpt, map_location="cpu", weights_only=True)["state"])["step"]
    copy = work / "killed-cpu"
    shutil.copytree(out, copy)
    rc, wall = run(cmd + ["--resume"], work / "train.log")
    result.update(resume_same_device_rc=rc, resume_same_device_s=round(wall, 1))
    if rc == 0:
        result["resume_same_device_steps"] = epoch_log(out)["step"]
    cpu_cmd = train_cmd(data, val, copy, "cpu", steps, ["--workers", str(workers), "--checkpoint-every", str(every),
                                                        "--resume"])
    rc, wall = run(cpu_cmd, work / "train.log")
    result.update(resume_on_cpu_rc=rc, resume_on_cpu_s=round(wall, 1))
    if rc == 0:
        result["resume_on_cpu_steps"] = epoch_log(copy)["step"]
    result["ok"] = (result["killed_at_step"] < steps and result.get("resume_same_device_steps") == steps
                    and result.get("resume_on_cpu_steps") == steps)
    return result


def network_rate(device: str, batch: int = 128, size: int = 160, steps: int = 30) -> dict:
    """Forward + backward of the default network on ready-made batches: the GPU's ceiling."""
    import torch

    from simsearch.model import load_model

    net = load_model(ROOT / "simsearch" / "models" / "default.safetensors").to(device).train()
    net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-6)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    out = {}
    for bf16 in (True, False):
        for i in range(steps + 5):
            if i == 5:
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                t = time.perf_counter()
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                loss = net(x).float().sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        out["bf16" if bf16 else "fp32"] = round(batch * steps / (time.perf_counter() - t), 1)
    del net, opt, x
    if device.startswith("cuda"):
        torch.cuda.empty_cache()  # the training runs below are other processes
    return out


def vectors_agree(device: str, model_dir: Path, folder: Path) -> dict:
    """The trained model's vectors: torch on `device` (bf16 and fp32) and ONNX Runtime against
    torch fp32 on the CPU, as the lowest cosine over the pictures."""
    import onnxruntime as ort
    import torch
    from PIL import Image

    from simsearch.embedder import Embedder
    from simsearch.model import load_model
    from simsearch.models import resolve_model

    net = load_model(model_dir / "model.safetensors").eval()
    cfg = net.config
    paths = sorted(folder.iterdir())[:128]
    onnx = resolve_model(model_dir / "model.onnx", precision="fp32")
    cpu_embedder = Embedder(onnx, device="cpu")
    batch = np.stack([cpu_embedder.prepare(Image.open(p).convert("RGB")) for p in paths])
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(cfg.std).view(1, 3, 1, 1) * 255
    x = (torch.from_numpy(batch).permute(0, 3, 1, 2).float() - mean) / std
    with torch.no_grad():
        ref = net(x).numpy()
        out = {"onnx_cpu_vs_torch_cpu": float((cpu_embedder.embed_arrays(batch) * ref).sum(1).min())}
        gpu = net.to(device)
        for bf16 in (False, True):
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                v = gpu(x.to(device)).float().cpu().numpy()
            out[f"torch_{device}_{'bf16' if bf16 else 'fp32'}_vs_cpu"] = float((v * ref).sum(1).min())
    out["onnxruntime_providers"] = ort.get_available_providers()
    if "CUDAExecutionProvider" in out["onnxruntime_providers"]:
        try:  # listed is not usable: its CUDA libraries may be missing
            gpu_embedder = Embedder(onnx, device="cuda:0")
            out["onnx_cuda_vs_torch_cpu"] = float((gpu_embedder.embed_arrays(batch) * ref).sum(1).min())
        except Exception as e:
            out["onnx_cuda_error"] = repr(e)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=40, help="steps of each speed run")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    import torch

    cores = os.cpu_count() or 1
    work = args.work or Path(tempfile.mkdtemp(prefix="simsearch-train-gpu-"))
    data, val = work / "train", work / "val"
    t = time.perf_counter()
    pictures(data, range(args.images), cores)
    pictures(val, range(10**6, 10**6 + 200), cores)
    results: dict = {"device": args.device, "images": args.images, "steps": args.steps,
                     "pictures_s": round(time.perf_counter() - t, 1), "torch": torch.__version__}
    if args.device.startswith("cuda"):
        results["gpu"] = torch.cuda.get_device_name(0)
        results["gpu_bf16"] = torch.cuda.is_bf16_supported()
    print(json.dumps(results), flush=True)
    many = max(2, cores - 2)
    on = "on" if args.device.startswith("cuda") and torch.cuda.is_bf16_supported() else "auto"
    rows = []
    for name, workers, bf16 in (("w1-bf16", 1, on), (f"w{many}-bf16", many, on),
                                (f"w{many}-fp32", many, "off")):
        rows.append(speed(args, data, val, work, name, workers, bf16))
        print(json.dumps(rows[-1]), flush=True)
    results["speed"] = rows
    print(table(rows, ["run", "workers", "bf16", "bf16_used", "rc", "views_per_s", "epoch_s", "wall_s", "uap"]),
          flush=True)
    checks = {"speed_runs_finish": all(r["rc"] == 0 for r in rows)}
    try:
        results["network_rate"] = network_rate(args.device)
        print("network views/s", results["network_rate"], flush=True)
    except Exception as e:  # reported, not fatal: the other checks still run
        results["network_rate_error"] = repr(e)
        checks["network_rate"] = False
    results["kill_resume"] = kill_and_resume(args, data, val, work, many)
    print(json.dumps(results["kill_resume"]), flush=True)
    checks["kill_resume"] = bool(results["kill_resume"].get("ok"))
    if rows[1]["rc"] == 0:
        try:
            agree = vectors_agree(args.device, work / rows[1]["run"], val)
            results["vectors"] = agree
            print(json.dumps(agree), flush=True)
            checks["vectors"] = all(v > 0.99 for k, v in agree.items() if k.endswith(("vs_cpu", "torch_cpu")))
        except Exception as e:
            results["vectors_error"] = repr(e)
            checks["vectors"] = False
    results["checks"] = checks
    print(json.dumps(checks), flush=True)
    report("train_gpu", results, args.json)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
