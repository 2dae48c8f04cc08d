"""The split report's renderers: the same before/after numbers in every format, untrusted text kept as text."""

from __future__ import annotations

import json

from auditor.fix.items import BROKEN, Exclusion, Item, SplitRequest
from auditor.fix.plan import plan_split
from auditor.fix.render import render_html, render_json, render_markdown, render_text
from auditor.fix.split_csv import split_rows
from auditor.fix.stats import split_statistics

XSS = "<img src=x onerror=alert(1)>"
ANSI = "\x1b[2J\x1b[31mred"


def hostile_plan():
    items = [Item(f"train/{XSS}/{k}.jpg", XSS, "train") for k in range(8)]
    items += [Item(f"val/{XSS}/{k}.jpg", XSS, "val") for k in range(2)]
    items += [Item(f"train/{ANSI}/{k}.jpg", ANSI, "train") for k in range(8)]
    items += [Item(f"train/b/{k}.jpg", "b|*x*", "train", duplicate_group="g") for k in range(2)]
    items.append(Item("val/b/leak.jpg", "b|*x*", "val", duplicate_group="g"))
    items.append(Item(f"train/b/{XSS}.jpg", "b|*x*", "train", excluded=Exclusion(BROKEN, XSS)))
    plan = plan_split(items, SplitRequest(fractions={"train": 0.8, "val": 0.2}, seed=0))
    stats = split_statistics(plan)
    stats.update(dataset="data", csv="split.csv")
    return plan, stats


def test_json_is_plain_and_complete():
    _, stats = hostile_plan()
    back = json.loads(render_json(stats))
    assert back == json.loads(json.dumps(stats))
    assert back["before"]["leaks"]["per_split"]["val"]["leaked"] == 1
    assert back["after"]["leaks"]["groups_spanning_splits"] == 0
    assert back["excluded"]["by_kind"] == {"broken": 1}
    assert set(back["targets"]["per_class"]) == {XSS, ANSI, "b|*x*"}


def test_html_escapes_labels_and_reasons():
    plan, stats = hostile_plan()
    page = render_html(stats, split_rows(plan))
    assert XSS not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "Content-Security-Policy" in page and "<script" not in page
    assert "held-out images with a train duplicate" in page


def test_markdown_and_terminal_show_before_and_after_without_injection():
    _, stats = hostile_plan()
    markdown = render_markdown(stats)
    assert XSS not in markdown and "b\\|\\*x\\*" in markdown
    assert "| held-out images with a train duplicate | val 1 of 3 (33.33 %)" in markdown
    text = render_text(stats)
    assert "\x1b" not in text and "?[2J?[31mred" in text
    assert "val 1 of 3 (33.33 %) · 1 group spans splits  →  val 0 of" in text
    assert "excluded: broken 1" in text and "per-class share of every split within ±2 points" in text


def test_the_duplicate_decision_and_its_verification_are_stated():
    plan, stats = hostile_plan()
    rule = "scaled cosine ≥ 0.60 or aligned pixel correlation ≥ 0.920"
    stats["duplicate_decision"] = {"rule": rule, "chosen_by": "the audit, on this dataset"}
    stats["verification"] = {"checked": True, "clean": True, "rounds": [
        {"round": 1, "rule": "scaled cosine ≥ 0.58", "groups_found": 1, "images_in_them": 2},
        {"round": 2, "rule": "scaled cosine ≥ 0.58", "groups_found": 0, "images_in_them": 0}]}
    expected = ("checked as an audit of the written split decides (its own rule: scaled cosine ≥ 0.58): no leak, "
                "no conflict, after keeping together 1 more group it links")
    for rendered in (render_text(stats), render_html(stats, split_rows(plan))):
        assert expected in rendered and f"duplicates decided at {rule} (chosen by the audit, on this dataset)" in rendered
    assert "no leak, no conflict" in render_markdown(stats)
