"""Shared by the benchmark scripts: machine/version/commit facts, table printing, JSON output."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def machine() -> dict:
    cpu = platform.processor() or ""
    flags = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and not cpu:
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line
                break
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f" {f}" in flags]
    return {"cpu": cpu, "cores": os.cpu_count(), "isa": isa, "python": platform.python_version(),
            "platform": platform.platform()}


def versions() -> dict:
    out = {}
    for name in ("numpy", "PIL", "faiss", "onnxruntime", "imagehash", "torch", "cv2"):
        module = sys.modules.get(name)
        if module is not None:
            out[name] = getattr(module, "__version__", "?")
    return out


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def table(rows: list[dict], columns: list[str]) -> str:
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    return "" if v is None else str(v)


def report(name: str, results: dict, json_path: str | None) -> None:
    data = {"benchmark": name, "when": time.strftime("%Y-%m-%d %H:%M:%S"), "commit": commit(),
            "machine": machine(), "versions": versions(), "results": results}
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {json_path}", file=sys.stderr)


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM where Linux gives it (ru_maxrss survives
    exec, so a benchmark's child would report its parent's memory when that was larger)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration, ValueError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- real-like vectors (benchmarks/dedupe.py, benchmarks/query.py) ---------------------------

def model_background():
    from simsearch.models import resolve_model
    from simsearch.scoring import load_background

    ref = resolve_model(None)
    bg = load_background(ref.background_file, ref.model_id, ref.config.dim)
    return ref, bg


class RealLike:
    """Vectors whose pair scores follow the background set's: each is a background picture's
    vector plus Gaussian noise with the background's covariance, of norm sigma (log-normal per
    vector), normalised. So they sit where real pictures sit (their score offsets, which come
    from the nearest background picture, are spread like real ones), the raw-score quantiles
    follow the background's, and about as many pairs as among real pictures reach the search
    radius while almost none pass the adjusted threshold: unrelated real pictures are rarely
    duplicates. Parameters from a small grid on 4000 vectors (sigma 0.5-1.1, spread 0.2-0.4;
    fraction above the radius 4.1e-4 at sigma 0.5 against the background's 4.8e-4, quantiles
    0.5/0.9/0.99/0.999 of -0.005/0.185/0.378/0.569 against -0.010/0.183/0.422/0.635). An
    earlier generator (random topic directions) matched the radius fraction but put 3.5e-4 of
    all pairs above the adjusted threshold against the background's 6e-6: its random topics
    lay far from every real picture, where the adjustment raises scores."""

    def __init__(self, background, sigma: float = 0.45, spread: float = 0.3, seed: int = 0):
        self.b_vectors = background.vectors
        cov = np.cov(self.b_vectors.T)
        w, v = np.linalg.eigh(cov)
        self.root = (v * np.sqrt(np.clip(w, 0, None))).astype(np.float32)
        self.rng = np.random.default_rng(seed)
        self.sigma, self.spread = sigma, spread

    def gauss(self, n: int) -> np.ndarray:
        z = self.rng.standard_normal((n, self.root.shape[0]), dtype=np.float32) @ self.root.T
        return z / np.linalg.norm(z, axis=1, keepdims=True)

    def draw(self, n: int) -> np.ndarray:
        rng = self.rng
        sigma = self.sigma * np.exp(self.spread * rng.standard_normal(n, dtype=np.float32))[:, None]
        x = self.b_vectors[rng.integers(0, len(self.b_vectors), n)] + sigma * self.gauss(n)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
