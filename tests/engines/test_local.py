"""The local engine decodes in threads, or in processes when a GPU embeds: both give the same scans and pixels,
in the same order, and both stop when the caller does."""

from __future__ import annotations

import os
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from auditor.config import AuditConfig, default_workers
from auditor.encoding.imaging import ScanLimits, sha256_hex
from auditor.engines import DecodeJob
from auditor.engines.device import Devices
from auditor.engines import local
from auditor.engines.local import LocalEngine

SIZE = 24


class PixelSums:
    """Stands in for the backbone in these engine tests: each image's vector is its pixels' sum and checksum,
    so two runs agree only if they handed over the same pixels."""

    input_size = SIZE

    def embed(self, batch: np.ndarray) -> np.ndarray:
        assert batch.dtype == np.uint8
        flat = batch.reshape(len(batch), -1).astype(np.int64)
        return np.stack([flat.sum(1), (flat * np.arange(flat.shape[1]) % 65521).sum(1)], axis=1).astype(np.float64)


class Failing(PixelSums):
    def embed(self, batch):
        raise RuntimeError("the accelerator went away")


def _jobs(root: Path, count: int = 37) -> list[DecodeJob]:
    """Real files: JPEGs and PNGs of several sizes, one damaged, one that vanished; some want no pixels."""
    rng = np.random.default_rng(0)
    jobs = []
    for i in range(count):
        path = root / f"{i:03d}.{'png' if i % 3 else 'jpg'}"
        Image.fromarray(rng.integers(0, 256, (20 + i, 30 + 2 * i, 3), dtype=np.uint8)).save(path)
        jobs.append(DecodeJob(sha256_hex(path.read_bytes()), path, want_scan=True, want_pixels=i % 5 != 0))
    broken = root / "broken.jpg"
    broken.write_bytes(jobs[0].path.read_bytes()[:200])
    jobs.append(DecodeJob(sha256_hex(broken.read_bytes()), broken, want_scan=True, want_pixels=True))
    jobs.append(DecodeJob("0" * 64, root / "gone.png", want_scan=True, want_pixels=True))
    return jobs


def _run(engine: LocalEngine, jobs, backbone=None, batch_size: int = 8):
    batches = list(engine.run(jobs, backbone or PixelSums(), ScanLimits(), 10 * 2**20, batch_size, False))
    return ([s.to_json() for b in batches for s in b.scans], [sha for b in batches for sha in b.shas],
            np.concatenate([b.vectors for b in batches if b.vectors is not None]),
            [sha for b in batches for sha in b.done], [sha for b in batches for sha in b.unstable])


def test_processes_decode_exactly_what_threads_decode(tmp_path):
    jobs = _jobs(tmp_path)
    threads = _run(LocalEngine(2, decode_in="threads"), jobs)
    processes = _run(LocalEngine(2, decode_in="processes"), jobs)
    assert threads[0] == processes[0]  # every scan, the damaged file's problem included
    assert threads[1] == processes[1] and np.array_equal(threads[2], processes[2])
    assert threads[3] == processes[3] == [job.sha for job in jobs]  # every job settled once, in order
    assert threads[4] == processes[4] == ["0" * 64]  # the vanished file
    assert len(threads[1]) == sum(j.want_pixels for j in jobs) - 2  # the damaged and the vanished: no pixels


@pytest.mark.slow  # two seconds of decoding processes
def test_processes_stop_when_inference_fails(tmp_path):
    import multiprocessing

    rng = np.random.default_rng(1)
    jobs = []
    for i in range(8):  # photos-sized: decoding all 1 200 jobs would take many seconds on two cores
        path = tmp_path / f"big{i}.png"
        Image.fromarray(rng.integers(0, 256, (600, 600, 3), dtype=np.uint8)).save(path)
        jobs.append(DecodeJob(sha256_hex(path.read_bytes()), path, want_scan=True, want_pixels=True))
    begun = time.perf_counter()
    with pytest.raises(RuntimeError, match="went away"):
        _run(LocalEngine(2, decode_in="processes"), jobs * 150, backbone=Failing())
    assert time.perf_counter() - begun < 6  # the queued chunks were dropped, not decoded
    deadline = time.perf_counter() + 10
    while multiprocessing.active_children() and time.perf_counter() < deadline:
        time.sleep(0.1)
    assert not multiprocessing.active_children()  # and the decoding processes are gone


def _engine_on(gpus: int, workers: int) -> LocalEngine:
    engine = LocalEngine(workers)
    engine.__dict__["_devices"] = Devices(gpus=gpus, models=("NVIDIA H200",) * gpus, bfloat16=True)  # no nvidia-smi
    return engine


@pytest.mark.parametrize("gpus, workers, embeds, expected", [
    (1, 16, True, True),  # the GPU embeds: the cores decode in processes
    (1, 16, False, False),  # scans only: nothing competes with the decoding threads
    (0, 16, True, False),  # the CPUs embed: they are busy anyway
    (1, 2, True, False),  # two processes would not pay for their start
])
def test_auto_decodes_in_processes_only_when_a_gpu_embeds(gpus, workers, embeds, expected, monkeypatch):
    monkeypatch.setattr(local, "main_module_is_safe_to_spawn", lambda: True)
    assert _engine_on(gpus, workers).decodes_in_processes(embeds) is expected


def test_auto_keeps_threads_where_a_spawned_process_could_rerun_the_program(monkeypatch):
    monkeypatch.setattr(local, "main_module_is_safe_to_spawn", lambda: False)
    assert _engine_on(1, 16).decodes_in_processes(embeds=True) is False


def _main(file: str | None, spec_name: str | None = None):
    module = types.ModuleType("__main__")
    if file is not None:
        module.__file__ = file
    module.__spec__ = None if spec_name is None else types.SimpleNamespace(name=spec_name)
    return module


@pytest.mark.parametrize("main, safe", [
    (_main(None), True),  # a notebook, the REPL, python -c: nothing to import
    (_main("/venv/bin/audit"), True),  # the console scripts pip writes are guarded
    (_main("/venv/bin/auditor"), True),
    (_main("/src/auditor/__main__.py", "auditor.__main__"), True),  # python -m auditor: guarded too
    (_main("/home/me/train.py"), False),  # a script of the user's may have no guard
    (_main("/venv/lib/pytest/__main__.py", "pytest.__main__"), False),
])
def test_which_main_modules_a_spawned_process_may_import(monkeypatch, main, safe):
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert local.main_module_is_safe_to_spawn() is safe


def test_python_m_auditor_runs_nothing_when_a_spawned_process_imports_it(capsys):
    import runpy

    runpy.run_module("auditor.__main__", run_name="__mp_main__")  # what a spawned process does with it
    assert capsys.readouterr().out == ""  # no command ran (it would print usage and exit)


def test_asking_for_processes_or_threads_is_obeyed_and_nonsense_refused():
    assert LocalEngine(2, decode_in="processes").decodes_in_processes(embeds=False) is True
    engine = _engine_on(1, 16)
    engine.decode_in = "threads"
    assert engine.decodes_in_processes(embeds=True) is False
    with pytest.raises(ValueError, match="decode_in"):
        LocalEngine(2, decode_in="fibres")


def test_workers_default_to_this_machines_cores():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert default_workers() == min(64, cores)
    assert AuditConfig().workers == default_workers()
    assert AuditConfig(workers=3).workers == 3


@pytest.mark.slow  # a real backbone: seconds
def test_a_real_backbone_embeds_alike_whichever_workers_decoded(tmp_path):
    from auditor.backbones.registry import _load, packaged_efficientnet_weights

    jobs = _jobs(tmp_path, count=12)
    vectors = {}
    for mode in ("threads", "processes"):
        backbone = _load("efficientnet-lite0", packaged_efficientnet_weights(), "packaged", "float32", "n")
        backbone.input_size, backbone.batch_shape = 32, 8
        vectors[mode] = _run(LocalEngine(2, decode_in=mode), jobs, backbone=backbone)[2]
    assert vectors["threads"].shape == (9, 1280)
    assert np.array_equal(vectors["threads"], vectors["processes"])


def test_a_decoding_process_leaves_ctrl_c_to_the_parent():
    import signal

    with local.interruptible_processes(1) as pool:
        assert pool.submit(signal.getsignal, signal.SIGINT).result() == signal.SIG_IGN


def test_a_decoded_scan_keeps_the_job_s_digest_string(tmp_path):
    # One sha256 string per content, not a second one hashed again from the same bytes (10⁶ scans held at once).
    path = tmp_path / "a.png"
    Image.new("RGB", (SIZE, SIZE), "red").save(path)
    sha = sha256_hex(path.read_bytes())
    scan, pixels, why = local.decode_or_why(DecodeJob(sha, path, want_scan=True, want_pixels=True), ScanLimits(),
                                            2**20, SIZE)
    assert why is None and scan.sha256 is sha and pixels.shape == (SIZE, SIZE, 3)
