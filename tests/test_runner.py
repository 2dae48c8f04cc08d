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


def test_work_after_encoding_runs_where_the_engine_decodes():
    """Calibration copies are made on the local engine's decoding workers (processes when a GPU embeds); with a
    cluster engine, on this machine's threads."""
    from auditor.config import AuditConfig
    from auditor.engines.local import LocalEngine, WorkerPool
    from auditor.runner import _pool_after_encoding

    config = AuditConfig(workers=6)
    assert _pool_after_encoding(LocalEngine(6, decode_in="processes"), config, embeds=True) == WorkerPool(6, True)
    assert _pool_after_encoding(LocalEngine(6, decode_in="threads"), config, embeds=True) == WorkerPool(6, False)
    assert _pool_after_encoding(object(), config, embeds=True) == WorkerPool(6, False)
