"""Which devices the embedding runs on, and the batch size and precision that suit them.

Found without importing TensorFlow (a fully cached audit never imports it): `nvidia-smi` for this
machine's GPUs, the cluster's resources for a Ray cluster (Ray names each node's GPU model in an
`accelerator_type:<model>` resource).

Precision `auto`:
  - GPUs that compute bfloat16 natively (NVIDIA compute capability 8.0 and later: A100, A10(G), L4, L40S,
    H100, H200, RTX 30xx/40xx) → bfloat16 (Keras' mixed_bfloat16: float32 weights, bfloat16 maths);
  - older GPUs (T4, V100, P100) → float16 (mixed_float16), which their tensor cores do compute;
  - CPUs → bfloat16 where the CPU has AMX tiles for it (amx_bf16: Sapphire Rapids and later Xeons), else float32.
    AVX512_BF16 alone is not enough: on a VM with it and no AMX, bfloat16 ran slower than float32
    (bench/bench_precision.py: 0.83× for EfficientNet-Lite0, 0.60× for ResNet50), while on the earlier machines it
    ran 1.9× faster (bench/bench_folding.py; that those had AMX is inferred from their speed, not read from flags).
    Cooper Lake and Zen 4 CPUs have AVX512_BF16 without AMX too (not measured here).
Batch size `auto`: 32 images on CPUs (larger batches do not run faster there and cost memory), 256 on
GPUs (a GPU is mostly idle at 32 images per call for a network this small).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CPU_BATCH = 32
GPU_BATCH = 256
# GPU models (as nvidia-smi and Ray name them) older than compute capability 8.0: no native bfloat16.
PRE_AMPERE = ("T4", "V100", "P100", "P40", "P4", "K80", "M60", "M40", "TITAN V", "TITAN X", "QUADRO", "RTX 20", "GTX")


@dataclass(frozen=True)
class Devices:
    gpus: int = 0  # GPUs the embedding can use (0: CPUs only)
    models: tuple[str, ...] = ()  # e.g. ("NVIDIA H200",) or ("A100",)
    bfloat16: bool = False  # every GPU computes bfloat16 natively
    # CPUs only: every node that embeds has AMX for bfloat16 (a Ray cluster's nodes, probed); None: this machine decides
    cpu_bfloat16: bool | None = None

    @property
    def kind(self) -> str:
        return "gpu" if self.gpus else "cpu"

    def describe(self) -> str:
        if not self.gpus:
            return "CPUs"
        return f"{self.gpus} GPU{'s' if self.gpus != 1 else ''} ({', '.join(sorted(set(self.models))) or 'unknown model'})"


CPU_ONLY = Devices()


def local_devices() -> Devices:
    """This machine's NVIDIA GPUs as `nvidia-smi` lists them (respecting CUDA_VISIBLE_DEVICES)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1") or shutil.which("nvidia-smi") is None:
        return CPU_ONLY
    try:
        listed = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return CPU_ONLY
    if listed.returncode != 0:
        return CPU_ONLY
    rows = [[cell.strip() for cell in line.split(",")] for line in listed.stdout.splitlines() if line.strip()]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        rows = rows[:len([v for v in visible.split(",") if v.strip()])]
    if not rows:
        return CPU_ONLY
    return Devices(gpus=len(rows), models=tuple(row[0] for row in rows),
                   bfloat16=all(_capability(row) >= 8.0 for row in rows))


def backend_can_use_gpus() -> bool:
    """Whether the Keras backend installed here was installed with CUDA (checked by its CUDA packages, not
    by importing it): a GPU machine with a CPU-only TensorFlow embeds on CPUs, and must not get GPU settings."""
    import importlib.util

    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    wanted = {"tensorflow": ("nvidia.cudnn",), "torch": ("nvidia.cuda_runtime", "nvidia.cudnn"),
              "jax": ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_cuda12_pjrt", "jax_cuda13_pjrt")}.get(backend, ())
    for name in wanted:
        try:
            if importlib.util.find_spec(name) is not None:
                return True
        except (ImportError, ValueError):
            continue
    # CUDA 13 builds of torch name their runtime packages differently (nvidia/cu13/…); their version says it
    return backend == "torch" and "+cu" in _distribution_version("torch")


def _distribution_version(name: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return ""


def cluster_devices(resources: dict[str, float]) -> Devices:
    """A Ray cluster's GPUs, from `ray.cluster_resources()`."""
    gpus = int(resources.get("GPU", 0))
    if not gpus:
        return CPU_ONLY
    models = tuple(key.split(":", 1)[1] for key in resources if key.startswith("accelerator_type:"))
    return Devices(gpus=gpus, models=models, bfloat16=bool(models) and not any(_pre_ampere(m) for m in models))


def batch_size_for(devices: Devices, requested: int | None) -> int:
    """The batch size asked for, or (None = auto) the one that suits the devices."""
    if requested:
        return int(requested)
    return GPU_BATCH if devices.gpus else CPU_BATCH


def precision_for(devices: Devices, requested: str) -> str:
    """The precision asked for, or (auto) the fastest one the devices compute natively."""
    if requested != "auto":
        return requested
    if devices.gpus:
        return "bfloat16" if devices.bfloat16 else "float16"
    if devices.cpu_bfloat16 is not None:  # the nodes that embed were asked (a Ray cluster)
        return _cpu_choice(devices.cpu_bfloat16)
    return cpu_precision()


def cpu_precision(cpuinfo: str | None = None) -> str:
    """bfloat16 where the CPU has AMX tiles for it, else float32 (see the module's docstring for the measurements).
    `cpuinfo`: the text of /proc/cpuinfo (read when None)."""
    return _cpu_choice(has_amx_bf16(cpuinfo))


def has_amx_bf16(cpuinfo: str | None = None) -> bool:
    """The CPU lists `amx_bf16` (read from /proc/cpuinfo when `cpuinfo` is None; False where it cannot be read)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="ignore")
        except OSError:
            return False
    return "amx_bf16" in cpuinfo.split()


def _cpu_choice(amx: bool) -> str:
    # Only TensorFlow's CPU kernels (oneDNN) use AMX for Keras' mixed_bfloat16; elsewhere bfloat16 would be emulated.
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return "float32"
    return "bfloat16" if amx else "float32"


def _capability(row: list[str]) -> float:
    try:
        return float(row[1])
    except (IndexError, ValueError):
        return 0.0 if _pre_ampere(row[0]) else 8.0


def _pre_ampere(model: str) -> bool:
    upper = model.upper()
    return any(name in upper for name in PRE_AMPERE)
