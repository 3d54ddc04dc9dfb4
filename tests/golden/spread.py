"""Measures how far the golden values move when only the CPU kernels change, and writes it as JSON.

    OMP_NUM_THREADS=1 .venv/bin/python tests/golden/spread.py [--out tests/golden/spread.json]

Each setting recomputes every golden value (``make_golden.compute``) in a fresh process under one
kernel selection: PyTorch's vectorised kernels (``ATEN_CPU_CAPABILITY`` default = no SIMD, avx2,
avx512), oneDNN's convolutions (``ONEDNN_MAX_CPU_ISA``), MKL's BLAS (``MKL_ENABLE_INSTRUCTIONS``),
two intra-op threads, and combinations. For each kind of quantity (tests/golden/compare.py) it
records the largest deviation from the stored golden file (in the comparator's own measure), the
key where it occurs, the number of tensors not bit-identical, and the number of changed codes.
The tolerances of compare.py are 10-100× the largest of these (docs/golden-tolerances.md).
Settings the CPU cannot run (avx512 on an AVX2 CPU) fall back silently inside PyTorch; the JSON
records the CPU model and flags so that a reader can tell.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from golden import compare, make_golden  # noqa: E402

SETTINGS = {  # name -> (environment, intra-op threads)
    "as installed": ({}, 1),
    "ATEN_CPU_CAPABILITY=default": ({"ATEN_CPU_CAPABILITY": "default"}, 1),
    "ATEN_CPU_CAPABILITY=avx2": ({"ATEN_CPU_CAPABILITY": "avx2"}, 1),
    "ATEN_CPU_CAPABILITY=avx512": ({"ATEN_CPU_CAPABILITY": "avx512"}, 1),
    "ONEDNN_MAX_CPU_ISA=AVX2": ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, 1),
    "ONEDNN_MAX_CPU_ISA=SSE41": ({"ONEDNN_MAX_CPU_ISA": "SSE41"}, 1),
    "MKL_ENABLE_INSTRUCTIONS=AVX2": ({"MKL_ENABLE_INSTRUCTIONS": "AVX2"}, 1),
    "MKL_ENABLE_INSTRUCTIONS=SSE4_2": ({"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}, 1),
    "2 threads": ({}, 2),
    "all lowest (default, SSE41, SSE4_2)": (
        {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}, 1),
    "AVX2 machine (avx2, AVX2, AVX2, 2 threads)": (
        {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}, 2),
}

CHILD = (
    "import sys; sys.path.insert(0, sys.argv[3]); from golden import make_golden; "
    "from safetensors.torch import save_file; save_file(make_golden.compute(int(sys.argv[2])), sys.argv[1])"
)


def recompute(environment: dict[str, str], threads: int, out: Path) -> dict[str, torch.Tensor]:
    env = {**os.environ, **environment, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, "-c", CHILD, str(out), str(threads), str(HERE.parent)], env=env, check=True)
    return load_file(out)


def measure(stored: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> dict:
    """Per kind: the largest deviation (compare.deviation, before any tolerance) and its key."""
    scales = compare.group_scales(stored)
    worst = {kind: {"deviation": 0.0, "key": None} for kind in compare.KINDS}
    changed = 0
    for key, expected in stored.items():
        if torch.equal(got[key], expected):
            continue
        changed += 1
        kind = compare.kind(key)
        value = compare.deviation(key, expected, got[key], scales)
        if kind == "train_run":  # the raw gap in units of lr·steps, before the Adam allowance
            value = (got[key].double() - expected.double()).abs().max().item() / (compare.TRAIN_LR * compare.TRAIN_STEPS)
        if value > worst[kind]["deviation"]:
            worst[kind] = {"deviation": value, "key": key}
    return {"tensors_changed": changed, "tensors": len(stored), "worst": worst,
            "problems": compare.compare(stored, got)}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(HERE / "spread.json"))
    args = parser.parse_args()
    stored, _ = make_golden.load()
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for n, (name, (environment, threads)) in enumerate(SETTINGS.items()):
            results[name] = measure(stored, recompute(environment, threads, Path(work) / f"{n}.safetensors"))
            print(f"{name}: {results[name]['tensors_changed']} changed, "
                  f"{len(results[name]['problems'])} beyond tolerance", file=sys.stderr)
    overall = {kind: max(r["worst"][kind]["deviation"] for r in results.values()) for kind in compare.KINDS}
    record = {
        "date": datetime.date.today().isoformat(), "cpu": cpu_model(), "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "measure": "compare.deviation per kind; train_run: max|a - r| / (lr * steps)",
        "largest": overall, "tolerance": compare.TOLERANCE, "settings": results,
    }
    out = Path(args.out)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(out)
    print(json.dumps(overall), file=sys.stderr)


if __name__ == "__main__":
    main()
