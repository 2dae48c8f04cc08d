"""Batch size and precision `auto` follow the devices: this machine's GPUs (nvidia-smi) or a Ray cluster's."""

from __future__ import annotations

import os
import stat

import pytest

from auditor.engines import device
from auditor.engines.device import (CPU_ONLY, Devices, batch_size_for, cluster_devices, cpu_precision,
                                    local_devices, precision_for)


def fake_nvidia_smi(tmp_path, monkeypatch, output: str, returncode: int = 0) -> None:
    """An `nvidia-smi` on PATH that prints what a real one prints for --query-gpu=name,compute_cap."""
    script = tmp_path / "bin" / "nvidia-smi"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\nprintf '{output}'\nexit {returncode}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_two_ampere_gpus_are_found_and_compute_bfloat16(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, monkeypatch, "NVIDIA H200, 9.0\\nNVIDIA A100-SXM4-80GB, 8.0\\n")
    devices = local_devices()
    assert devices == Devices(gpus=2, models=("NVIDIA H200", "NVIDIA A100-SXM4-80GB"), bfloat16=True)
    assert precision_for(devices, "auto") == "bfloat16"
    assert batch_size_for(devices, None) == 256


def test_a_t4_gets_float16_because_it_has_no_native_bfloat16(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, monkeypatch, "Tesla T4, 7.5\\n")
    assert precision_for(local_devices(), "auto") == "float16"


def test_cuda_visible_devices_limits_and_hides_gpus(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, monkeypatch, "NVIDIA L4, 8.9\\nNVIDIA L4, 8.9\\n")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert local_devices().gpus == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert local_devices() == CPU_ONLY


def test_a_failing_nvidia_smi_means_cpus(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, monkeypatch, "NVIDIA-SMI has failed", returncode=9)
    assert local_devices() == CPU_ONLY
    assert batch_size_for(local_devices(), None) == 32
    assert precision_for(local_devices(), "auto") == cpu_precision()


def test_a_ray_cluster_names_its_gpu_models_in_its_resources():
    mixed = cluster_devices({"CPU": 64.0, "GPU": 8.0, "accelerator_type:A100": 4.0, "accelerator_type:T4": 4.0})
    assert (mixed.gpus, mixed.bfloat16) == (8, False)  # one T4 is enough to need float16 everywhere
    assert precision_for(mixed, "auto") == "float16"
    h100 = cluster_devices({"CPU": 32.0, "GPU": 2.0, "accelerator_type:H100": 2.0})
    assert precision_for(h100, "auto") == "bfloat16"
    assert cluster_devices({"CPU": 2.0}) == CPU_ONLY


@pytest.mark.parametrize("asked", ["float32", "bfloat16", "float16"])
def test_what_the_user_asks_for_wins(asked):
    assert precision_for(Devices(gpus=1, bfloat16=True), asked) == asked
    assert batch_size_for(Devices(gpus=1), 8) == 8


@pytest.mark.slow
def test_float16_for_older_gpus_builds_and_embeds_like_float32():
    """The precision `auto` picks on a T4 or V100: Keras' mixed_float16 (run here on CPUs)."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from auditor.backbones.registry import resolve_backbone

    photos = sorted((Path(__file__).resolve().parents[2] / "samples" / "train" / "ants").glob("*.jpg"))[:4]
    batch = np.stack([np.asarray(Image.open(p).convert("RGB").resize((224, 224)), np.uint8) for p in photos])
    vectors = {}
    for precision in ("float32", "float16"):
        backbone = resolve_backbone("efficientnet-lite0", None, offline=True, precision=precision)
        backbone.batch_shape = len(batch)
        vectors[precision] = backbone.embed(batch)
        assert vectors[precision].dtype == np.float32 and backbone.cache_key.endswith(precision)
    a, b = vectors["float32"], vectors["float16"]
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.999  # 0.99998 measured


FLAGS = "flags\t\t: fpu sse sse2 avx2 avx512f avx512bw avx512vl"


@pytest.mark.parametrize("extra, expected", [
    ("", "float32"),
    (" avx512_bf16", "float32"),  # the dot-product instructions alone: bfloat16 measured slower than float32
    (" avx512_bf16 amx_bf16 amx_tile", "bfloat16"),  # AMX tiles: where bfloat16 ran 1.9× faster (inferred AMX)
    (" avx512_bf16 amx_tile", "float32"),  # tiles without their bf16 instructions
])
def test_cpus_get_bfloat16_only_where_they_have_amx_for_it(monkeypatch, extra, expected):
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert cpu_precision(f"processor\t: 0\n{FLAGS}{extra}\n") == expected


def test_other_keras_backends_run_float32_on_cpus(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert cpu_precision(f"{FLAGS} avx512_bf16 amx_bf16 amx_tile\n") == "float32"


@pytest.mark.parametrize("nodes_have_amx, expected", [(True, "bfloat16"), (False, "float32")])
def test_a_clusters_cpu_nodes_decide_the_precision_not_the_driver(monkeypatch, nodes_have_amx, expected):
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    monkeypatch.setattr(device, "cpu_precision", lambda cpuinfo=None: "unused: the driver's CPU")
    assert precision_for(Devices(cpu_bfloat16=nodes_have_amx), "auto") == expected
    assert precision_for(Devices(cpu_bfloat16=nodes_have_amx), "float16") == "float16"  # asked for: obeyed


@pytest.mark.parametrize("torch_version, expected", [("2.11.0+cu130", True), ("2.11.0+cpu", False), ("", False)])
def test_a_cuda_13_torch_is_known_by_its_version_when_no_cuda_12_package_is_found(monkeypatch, torch_version, expected):
    import importlib.util

    monkeypatch.setenv("KERAS_BACKEND", "torch")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # no nvidia.cuda_runtime / nvidia.cudnn
    monkeypatch.setattr(device, "_distribution_version", lambda name: torch_version if name == "torch" else "")
    assert device.backend_can_use_gpus() is expected


def test_a_cpu_only_tensorflow_cannot_use_gpus_whatever_torch_says(monkeypatch):
    import importlib.util

    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(device, "_distribution_version", lambda name: "2.11.0+cu130")
    assert device.backend_can_use_gpus() is False
