"""auditor/runner.py: every check, the merge check included, runs inside the crash guard."""

from __future__ import annotations

from tests.gate.test_merge import EXISTING_IMAGES, image, merged_context


def test_a_crash_of_the_merge_check_is_its_error_result_not_the_end_of_the_run(monkeypatch):
    import auditor.gate.merge as merge_module
    from auditor.checks.base import Check
    from auditor.index.merged import INCOMING
    from auditor.report import Status
    from auditor.runner import run_checks

    def crash(_ctx):
        raise RuntimeError("merge exploded")

    monkeypatch.setattr(merge_module, "CHECK", Check("merge", crash, merge_module.judge))
    ctx = merged_context(EXISTING_IMAGES + [image(INCOMING, "new.jpg", "a")])
    results = {r.id: r for r in run_checks(ctx, ["class_balance"])}
    assert results["merge"].status == Status.ERROR and "merge exploded" in results["merge"].summary
    assert results["class_balance"].status != Status.ERROR


def test_a_crash_in_a_judge_is_an_error_result_too(monkeypatch):
    from auditor.checks import CHECKS
    from auditor.checks.base import Check
    from auditor.report import Status
    from auditor.runner import run_checks
    from tests.checks.synthetic_audit import synthetic_context

    def bad_judge(_evidence, _policy):
        raise ValueError("judge exploded")

    balance = CHECKS["class_balance"]
    monkeypatch.setitem(CHECKS, "class_balance", Check("class_balance", balance.compute, bad_judge))
    ctx = synthetic_context([{"path": f"train/a/{i}.jpg", "label": "a"} for i in range(3)], with_embeddings=False)
    [result] = run_checks(ctx, ["class_balance"])
    assert result.status == Status.ERROR and "judge exploded" in result.summary


def test_work_after_encoding_runs_where_the_engine_says(monkeypatch, tmp_path):
    """Calibration copies are made on the engine's pool: the local engine's decoding workers (processes when a GPU
    embeds), a cluster engine's threads on this machine."""
    from PIL import Image

    from auditor.config import AuditConfig
    from auditor.engines.local import LocalEngine, WorkerPool
    from auditor.engines.ray_engine import RayEngine
    from auditor.runner import prepare

    assert LocalEngine(6, decode_in="processes").pool(embeds=True) == WorkerPool(6, True)
    assert LocalEngine(6, decode_in="threads").pool(embeds=True) == WorkerPool(6, False)
    assert LocalEngine(6).pool(embeds=False) == WorkerPool(6, False)  # nothing embeds: no GPU to feed
    assert RayEngine(6).pool(embeds=True) == WorkerPool(6, False)

    class Engine(LocalEngine):
        def pool(self, embeds):
            return WorkerPool(5, embeds)

    monkeypatch.setattr("auditor.runner.resolve_engine", lambda name, workers: Engine(workers))
    (tmp_path / "data" / "cat").mkdir(parents=True)
    Image.new("RGB", (40, 40), "red").save(tmp_path / "data" / "cat" / "a.png")
    ctx = prepare(tmp_path / "data", AuditConfig(cache_dir=tmp_path / "cache"), embed=False)
    assert ctx.pool == WorkerPool(5, False)


def test_the_report_names_no_runtime_where_nothing_was_embedded():
    # A re-run whose embeddings all came from the cache said "runtime: keras" though no network ran.
    from types import SimpleNamespace

    from auditor.runner import described_backbone

    backbone = SimpleNamespace(describe=lambda: {"name": "efficientnet-lite0", "runtime": "litert"})
    assert described_backbone(backbone, {"embeddings_computed": 3})["runtime"] == "litert"
    assert described_backbone(backbone, {"embeddings_computed": 0, "feature_maps_computed": 2})["runtime"] == "litert"
    assert described_backbone(backbone, {"embeddings_computed": 0, "feature_maps_computed": 0})["runtime"] is None
    assert described_backbone(backbone, {})["runtime"] is None
    assert described_backbone(None, {}) == {"name": None, "note": "no embeddings computed"}


def test_large_blocks_are_mapped_on_their_own_from_the_scale_where_memory_is_the_limit(monkeypatch, tmp_path):
    from PIL import Image

    from auditor import memory, runner
    from auditor.config import AuditConfig

    calls = []
    monkeypatch.setattr(memory, "map_large_blocks", lambda: calls.append(True) or True)
    assert not runner._bound_memory_at_scale(memory.MAP_LARGE_BLOCKS_FROM - 1) and calls == []
    assert runner._bound_memory_at_scale(memory.MAP_LARGE_BLOCKS_FROM) and calls == [True]
    # An audit asks with its own number of images: two images here, set only where the limit is two.
    (tmp_path / "data" / "cat").mkdir(parents=True)
    for name, colour in (("a", "red"), ("b", "blue")):
        Image.new("RGB", (40, 40), colour).save(tmp_path / "data" / "cat" / f"{name}.png")
    for limit, expected in ((3, 1), (2, 2)):
        monkeypatch.setattr(memory, "MAP_LARGE_BLOCKS_FROM", limit)
        runner.prepare(tmp_path / "data", AuditConfig(cache_dir=tmp_path / "cache"), embed=False)
        assert len(calls) == expected
