"""auditor/runner.py: every check, the merge check included, runs inside the crash guard."""

from __future__ import annotations

from tests.test_result_cache import _items
from tests.checks.synthetic_audit import synthetic_context


def test_a_crash_of_the_merge_check_is_its_error_result_not_the_end_of_the_run(monkeypatch, tmp_path):
    import auditor.merge as merge_module
    import auditor.runner as runner_module
    from auditor.report import Status

    ctx = synthetic_context(_items(), with_embeddings=False, use_cache=False)
    monkeypatch.setattr(runner_module, "prepare", lambda *args, **kwargs: ctx)

    def crash(_ctx):
        raise RuntimeError("merge exploded")

    monkeypatch.setattr(merge_module, "merge_check", crash)
    report, _ = runner_module.audit(tmp_path, ctx.config, check_ids=["class_balance"], against=tmp_path)
    merged = report.check("merge")
    assert merged.status == Status.ERROR and "merge exploded" in merged.summary
    assert report.check("class_balance").status != Status.ERROR
