"""What the Ray actors return becomes EncodedBatches on the driver (no Ray needed to test that), and
--engine ray without the extra installed is a one-line error with the install tip."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from auditor.encoding.imaging import ImageScan, Problem
from auditor.engines.ray_engine import NODE_PATHS_TIP, collect
from auditor.errors import AuditorError
from tests.e2e.cli_helpers import SAMPLES, run_cli


def rows(shas, embedded, unreadable=None, dim=4):
    count = len(shas)
    scans = [json.dumps(ImageScan(sha256=sha, file_size=10, problems=[Problem("tiny", "warning", "small")]).to_json())
             for sha in shas]
    return {"sha": np.array(shas), "scan": np.array(scans), "why": np.array(["" for _ in shas]),
            "unreadable": np.array(unreadable or [False] * count), "has_pixels": np.array(embedded),
            "vector": np.arange(count * dim, dtype=np.float32).reshape(count, dim),
            "inference_s": np.full(count, 0.5), "cpu_s": np.full(count, 0.25)}


def test_only_embedded_rows_bring_vectors_and_every_row_is_settled():
    [batch] = collect(iter([rows(["a", "b", "c"], [True, False, True])]))
    assert batch.done == ["a", "b", "c"] and [s.sha256 for s in batch.scans] == ["a", "b", "c"]
    assert batch.scans[0].problems == [Problem("tiny", "warning", "small")]  # scans survive the JSON round trip
    assert batch.shas == ["a", "c"]
    np.testing.assert_array_equal(batch.vectors, [[0, 1, 2, 3], [8, 9, 10, 11]])
    assert batch.inference_s == 1.5 and batch.worker_cpu_s == 0.75


def test_a_batch_without_images_to_embed_brings_no_vectors():
    [batch] = collect(iter([rows(["a"], [False])]))
    assert batch.vectors is None and batch.shas == [] and batch.done == ["a"]


def test_workers_that_read_nothing_stop_the_run_but_a_few_unreadable_files_do_not():
    with pytest.raises(AuditorError) as error:
        list(collect(iter([rows(["a", "b"], [False, False], unreadable=[True, True])])))
    assert error.value.tip == NODE_PATHS_TIP
    batches = list(collect(iter([rows(["a", "b"], [True, False], unreadable=[False, True]),
                                 rows(["c"], [False], unreadable=[True])])))
    assert [b.done for b in batches] == [["a", "b"], ["c"]]  # left for the next run, like a changed file


def test_engine_ray_without_the_extra_is_a_one_line_error(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None if name == "ray" else real(name, *a, **k))
    result = run_cli("audit", SAMPLES, "--engine", "ray", "--offline", "--cache-dir", tmp_path)
    assert result.exit_code == 2
    output = result.stdout + result.stderr
    assert "pip install 'auditor[ray]'" in output and "Traceback" not in output


def test_an_unreachable_cluster_address_fails_in_seconds_not_minutes():
    import socket
    import time

    from auditor.engines.ray_engine import _check_reachable
    from auditor.errors import ConfigError

    with socket.socket() as probe:  # a port nobody listens on: bound, then closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.perf_counter()
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(ConfigError) as error:
            _check_reachable(address)
        assert "cannot reach the Ray cluster" in error.value.message and "RAY_ADDRESS" in error.value.tip
    assert time.perf_counter() - started < 10
    _check_reachable("auto")  # left to Ray, which fails at once by itself where no cluster runs
