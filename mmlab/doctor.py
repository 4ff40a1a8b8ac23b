"""`python -m mmlab doctor`: is this machine ready for the course?

Checks versions, the device, whether the Triton kernels can run (natively on CUDA, or
through the interpreter on a CPU), the committed data's checksums, the bundled text
model and dataset generation; prints one line per check and a verdict. The first thing
an instructor runs on a room of machines.
"""
from __future__ import annotations

import importlib
import os
import platform
import subprocess
import sys
from dataclasses import dataclass

PACKAGES = ("torch", "numpy", "triton", "transformers", "tokenizers", "librosa", "sklearn",
            "matplotlib", "ipywidgets", "jupyterlab", "nbval", "safetensors")
REQUIRED = ("torch", "numpy", "sklearn", "safetensors")

# A tiny end-to-end check of a kernel against its reference, run in a child process so
# that TRITON_INTERPRET can be set before the kernels are defined.
_KERNEL_CHECK = """
import torch
from mmlab.align import info_nce as reference
from mmlab.kernels import info_nce
device = "cuda" if torch.cuda.is_available() else "cpu"
g = torch.Generator().manual_seed(0)
x = torch.nn.functional.normalize(torch.randn(37, 24, generator=g), dim=1).to(device)
y = torch.nn.functional.normalize(torch.randn(37, 24, generator=g), dim=1).to(device)
got = info_nce(x, y, 10.0, backend="triton")
torch.testing.assert_close(got, reference(x, y, 10.0), rtol=1e-4, atol=1e-5)
print("ok")
"""


@dataclass
class Check:
    name: str
    status: str  # "ok", "warn" or "fail"
    detail: str


def _version(name: str) -> str | None:
    try:
        module = importlib.import_module(name)
    except Exception:  # a broken install counts as missing
        return None
    return getattr(module, "__version__", "installed")


def check_versions() -> list[Check]:
    checks = [Check("python", "ok" if sys.version_info >= (3, 10) else "fail",
                    f"{platform.python_version()} on {platform.system()} {platform.machine()}")]
    for name in PACKAGES:
        version = _version(name)
        if version is None:
            status = "fail" if name in REQUIRED else "warn"
            checks.append(Check(name, status, "not installed"))
        else:
            checks.append(Check(name, "ok", version))
    return checks


def check_device() -> Check:
    import torch

    from mmlab.runtime import pick_device

    device = pick_device()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(0)
        return Check("device", "ok", f"cuda: {props.name}, {props.total_memory / 2**30:.0f} GiB, "
                                     f"compute capability {props.major}.{props.minor}")
    return Check("device", "ok", f"{device.type} ({os.cpu_count()} cores); the GPU-only cells will be skipped")


def check_kernels(timeout: float = 300.0) -> Check:
    """Run a Triton kernel against its reference in a child process given `timeout` seconds."""
    import torch

    from mmlab import validation

    validation.finite_float("timeout", timeout, low=0, low_open=True)

    if _version("triton") is None:
        return Check("triton kernels", "warn", "triton not installed: losses use the PyTorch reference")
    env = dict(os.environ)
    mode = "native on CUDA"
    if not torch.cuda.is_available():
        env["TRITON_INTERPRET"] = "1"
        mode = "through the Triton interpreter on the CPU"
    try:
        run = subprocess.run([sys.executable, "-c", _KERNEL_CHECK], env=env, capture_output=True,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Check("triton kernels", "fail", f"kernel check did not finish in {timeout:.0f} s")
    if run.returncode != 0 or run.stdout.strip() != "ok":
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        return Check("triton kernels", "fail", f"kernel check failed: {last}")
    return Check("triton kernels", "ok", f"info_nce matches the reference, {mode}")


def check_data() -> list[Check]:
    checks = []
    try:
        from mmlab.data import verify_assets

        report = verify_assets()
        bad = [r for r in report if not r["ok"]]
        detail = f"{len(report)} file(s), SHA-256 verified" if not bad else \
            "; ".join(f"{r['file']}: expected {r['expected']}, got {r['actual']}" for r in bad)
        checks.append(Check("AV-Digits assets", "fail" if bad else "ok", detail))
    except Exception as err:
        checks.append(Check("AV-Digits assets", "fail", f"{type(err).__name__}: {err}"))
    try:
        from mmlab.data import ShapesWorld

        batch = ShapesWorld("train", size=16).batch(list(range(16)))
        checks.append(Check("Shapes-World", "ok", f"generated 16 items, images {tuple(batch['image'].shape)}"))
    except Exception as err:
        checks.append(Check("Shapes-World", "fail", f"{type(err).__name__}: {err}"))
    try:
        from mmlab.preprocess.text import minilm_path

        path = minilm_path()
        has_weights = (path / "model.safetensors").is_file() and (path / "vocab.txt").is_file()
        checks.append(Check("MiniLM text model", "ok" if has_weights else "warn",
                            "bundled weights and vocab found" if has_weights else f"incomplete at {path}"))
    except Exception as err:
        checks.append(Check("MiniLM text model", "warn", f"{type(err).__name__}: {err}"))
    return checks


def run_doctor(check_kernels_too: bool = True) -> int:
    """Print every check and a verdict; return the exit code (0 ready, 1 not ready)."""
    from mmlab import validation  # on use, like torch (which it imports)

    validation.boolean("check_kernels_too", check_kernels_too)
    checks = check_versions()
    checks.append(check_device())
    if check_kernels_too:
        checks.append(check_kernels())
    checks.extend(check_data())
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"[{c.status:^4}] {c.name:<{width}}  {c.detail}")
    failed = [c.name for c in checks if c.status == "fail"]
    warned = [c.name for c in checks if c.status == "warn"]
    if failed:
        print(f"verdict: NOT READY (failed: {', '.join(failed)})")
        return 1
    print("verdict: READY" + (f" (warnings: {', '.join(warned)})" if warned else ""))
    return 0
