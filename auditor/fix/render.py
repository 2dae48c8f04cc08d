"""Pure renderers of the split statistics (the dict `split_statistics` returns, plus what the command adds):
terminal text, Markdown, and one standalone HTML page (jinja2, auto-escaped, no network: a
Content-Security-Policy forbids every request). Untrusted text (labels, split names, paths) is escaped in
Markdown and HTML and quoted in the terminal where it could be mistaken for ours."""

from __future__ import annotations

import json

from auditor.text import plural

MAX_CLASS_COLUMNS = 12  # wider tables list the rest in the JSON only
MAX_WARNINGS = 30


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def _class_columns(stats: dict) -> tuple[list[str], int]:
    labels = set()
    for state in ("before", "after"):
        for row in stats[state]["splits"].values():
            labels.update(row["classes"])
    ordered = sorted(labels)
    return ordered[:MAX_CLASS_COLUMNS], max(0, len(ordered) - MAX_CLASS_COLUMNS)


def _leak_text(state: dict) -> str:
    leaks = state["leaks"]
    if not leaks["per_split"]:
        spanning = leaks["groups_spanning_splits"]
        return f"{plural(spanning, 'duplicate group')} {'spans' if spanning == 1 else 'span'} splits"
    parts = [f"{s} {m['leaked']} of {m['images']} ({m['percent']:g} %)" for s, m in leaks["per_split"].items()]
    spanning = leaks["groups_spanning_splits"]
    return "; ".join(parts) + f" · {plural(spanning, 'group')} {'spans' if spanning == 1 else 'span'} splits"


def _conflict_text(state: dict) -> str:
    c = state["conflicts"]
    return f"{plural(c['groups'], 'group')} ({c['images']} images)" if c["groups"] else "none"


def _mode_text(stats: dict) -> str:
    if stats["mode"] == "keep-existing":
        text = "keep-existing (today's splits; fewest images moved to remove every leak)"
    else:
        shares = " · ".join(f"{s} {100 * f:g} %" for s, f in stats["requested"].items())
        text = f"fractions {shares}, stratified by class, seed {stats['seed']}"
    if stats["dedupe"]:
        text += "; --dedupe"
    return text


def summary_rows(stats: dict) -> list[tuple[str, str, str]]:
    """(what, before, after) lines shared by every renderer."""
    before, after = stats["before"], stats["after"]
    rows = [
        ("held-out images with a train duplicate", _leak_text(before), _leak_text(after)),
        ("label conflicts", _conflict_text(before), _conflict_text(after)),
    ]
    if "group_by_values_spanning_splits" in before:
        rows.append(("--group-by values spanning splits", str(before["group_by_values_spanning_splits"]),
                     str(after["group_by_values_spanning_splits"])))
    rows.append(("images", f"{stats['files']} files",
                 f"{stats['kept']} kept, {stats['excluded']['total']} excluded, {stats['moved']['total']} moved"))
    return rows


def split_table(stats: dict) -> tuple[list[str], list[list[str]], int]:
    """Header and rows: split, images before → after, share (requested), one column per class (before → after)."""
    labels, hidden = _class_columns(stats)
    targets = stats.get("targets")
    header = ["split", "images", "share" + (" (requested)" if targets else "")] + labels
    rows = []
    total_after = stats["kept"] or 1
    for split, sizes in stats["sizes"].items():
        share = sizes["after"] / total_after
        share_text = _pct(share)
        if targets and split in targets["per_split"]:
            share_text += f" ({_pct(targets['per_split'][split]['requested'])})"
        before = stats["before"]["splits"].get(split, {}).get("classes", {})
        after = stats["after"]["splits"].get(split, {}).get("classes", {})
        cells = [f"{before.get(c, 0)} → {after.get(c, 0)}" for c in labels]
        rows.append([split, f"{sizes['before']} → {sizes['after']}", share_text] + cells)
    return header, rows, hidden


def target_lines(stats: dict) -> list[str]:
    targets = stats.get("targets")
    if not targets:
        return []
    return [
        f"per-class share of every split within ±{targets['class_tolerance_points']:g} points of the request: "
        f"{'yes' if all(c['within'] for r in targets['per_class'].values() for c in r['splits'].values()) else 'no'} "
        f"(worst {targets['worst_class_error_points']:g} points)",
        f"split sizes within ±{targets['size_tolerance_points']:g} point of the request: "
        f"{'yes' if all(r['within'] for r in targets['per_split'].values()) else 'no'} "
        f"(worst {targets['worst_size_error_points']:g} points)",
    ]


def decision_lines(stats: dict) -> list[str]:
    """How the duplicates were decided, and whether an audit of the written split agrees."""
    lines = []
    decision = stats.get("duplicate_decision")
    if decision and decision.get("rule"):
        lines.append(f"duplicates decided at {decision['rule']} (chosen by {decision['chosen_by']})")
    verification = stats.get("verification") or {}
    if verification.get("checked"):
        rounds = verification["rounds"]
        added = sum(r["groups_found"] for r in rounds)
        lines.append(f"checked as an audit of the written split decides (its own rule: {rounds[-1]['rule']}): "
                     + ("no leak, no conflict" if verification["clean"] else "NOT clean")
                     + (f", after keeping together {added} more group{'s' if added != 1 else ''} it links"
                        if added else ""))
    return lines


def _excluded_text(stats: dict) -> str:
    kinds = stats["excluded"]["by_kind"]
    return " · ".join(f"{k} {n}" for k, n in kinds.items()) if kinds else "none"


def _moved_text(stats: dict) -> str:
    routes = stats["moved"]["by_route"]
    return " · ".join(f"{r} {n}" for r, n in routes.items()) if routes else "none"


def render_text(stats: dict) -> str:
    """The terminal report: plain text, fixed-width tables."""
    lines = [f"auditor split: {stats.get('dataset', '')!s} → {stats.get('csv', '')!s}", f"mode: {_mode_text(stats)}", ""]
    rows = summary_rows(stats)
    width = max(len(r[0]) for r in rows)
    lines.append(f"{'':<{width}}  before  →  after")
    for what, before, after in rows:
        lines.append(f"{what:<{width}}  {before}  →  {after}")
    lines += ["", f"excluded: {_excluded_text(stats)}", f"moved: {_moved_text(stats)}", ""]
    header, table, hidden = split_table(stats)
    widths = [max(len(str(r[k])) for r in [header] + table) for k in range(len(header))]
    for row in [header] + table:
        lines.append("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())
    if hidden:
        lines.append(f"(+{hidden} more classes in the JSON)")
    lines += [""] + target_lines(stats)
    materialized = stats.get("materialized")
    if materialized:
        lines.append(f"materialized: {materialized['files']} files in {materialized['destination']} "
                     f"({materialized['hard_links']} hard links, {materialized['copies']} copies)")
        for label, folder in materialized["renamed_class_folders"].items():
            lines.append(f"  class {label!r} is in folder {folder!r}")
        lines += [f"  note: {n}" for n in materialized["notes"]]
    if stats["notes"]:
        lines += [f"note: {n}" for n in stats["notes"]]
    lines += decision_lines(stats)
    if stats["warnings"]:
        lines += ["", "warnings:"] + [f"  - {w}" for w in stats["warnings"][:MAX_WARNINGS]]
        if len(stats["warnings"]) > MAX_WARNINGS:
            lines.append(f"  … {len(stats['warnings']) - MAX_WARNINGS} more in the JSON")
    return _printable("\n".join(lines).rstrip()) + "\n"


def _printable(text: str) -> str:
    """Control characters from file names or labels (an ANSI escape sequence) shown as `?`, never sent to the terminal."""
    return "".join(ch if ch == "\n" or not (ord(ch) < 32 or 127 <= ord(ch) < 160) else "?" for ch in text)


def render_json(stats: dict) -> str:
    return json.dumps(stats, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def render_markdown(stats: dict) -> str:
    from auditor.formats.markdown import escape_md

    def cell(text: object) -> str:
        return escape_md(text)

    lines = [f"## auditor split: {cell(stats.get('dataset', ''))}", "", f"Mode: {cell(_mode_text(stats))}", "",
             "| | before | after |", "|---|---|---|"]
    lines += [f"| {cell(w)} | {cell(b)} | {cell(a)} |" for w, b, a in summary_rows(stats)]
    lines += ["", f"Excluded: {cell(_excluded_text(stats))}  ", f"Moved: {cell(_moved_text(stats))}", ""]
    header, table, hidden = split_table(stats)
    lines.append("| " + " | ".join(cell(h) for h in header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in table]
    if hidden:
        lines.append(f"\n+{hidden} more classes in the JSON")
    lines += [""] + [f"- {cell(t)}" for t in target_lines(stats) + decision_lines(stats)]
    if stats["warnings"]:
        lines += ["", "**Warnings**", ""] + [f"- {cell(w)}" for w in stats["warnings"][:MAX_WARNINGS]]
    return "\n".join(lines).rstrip() + "\n"


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'">
<meta name="referrer" content="no-referrer">
<title>auditor split: {{ stats.dataset }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 16px 24px; color: #1f2328; }
table { border-collapse: collapse; margin: 8px 0 16px; } td, th { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; }
th { background: #f6f8fa; } .muted { color: #6e7781; } .warn { color: #9a6700; } .ok { color: #1a7f37; }
code { background: #f6f8fa; padding: 0 3px; }
</style>
</head>
<body>
<h1>auditor split</h1>
<p><code>{{ stats.dataset }}</code> → <code>{{ stats.csv }}</code><br>Mode: {{ mode }}</p>
<h2>Before and after</h2>
<table><tr><th></th><th>before</th><th>after</th></tr>
{% for what, before, after in summary %}<tr><th>{{ what }}</th><td>{{ before }}</td><td>{{ after }}</td></tr>
{% endfor %}</table>
<p>Excluded: {{ excluded }}<br>Moved: {{ moved }}</p>
<h2>Splits and classes</h2>
<table><tr>{% for h in header %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in table %}<tr>{% for c in row %}<td>{{ c }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% if hidden %}<p class="muted">+{{ hidden }} more classes in the JSON.</p>{% endif %}
{% for line in targets %}<p>{{ line }}</p>{% endfor %}
{% for line in decision %}<p>{{ line }}</p>{% endfor %}
{% if stats.materialized %}<p>Materialized: {{ stats.materialized.files }} files in <code>{{ stats.materialized.destination }}</code>
({{ stats.materialized.hard_links }} hard links, {{ stats.materialized.copies }} copies).</p>
{% for n in stats.materialized.notes %}<p class="muted">{{ n }}</p>{% endfor %}{% endif %}
{% if stats.warnings %}<h2 class="warn">Warnings</h2><ul>
{% for w in stats.warnings %}<li>{{ w }}</li>
{% endfor %}</ul>{% endif %}
{% for n in stats.notes %}<p class="muted">{{ n }}</p>{% endfor %}
{% if excluded_rows %}<h2>Excluded files</h2>
<table><tr><th>path</th><th>label</th><th>reason</th></tr>
{% for r in excluded_rows %}<tr><td>{{ r.path }}</td><td>{{ r.label }}</td><td>{{ r.reason }}</td></tr>
{% endfor %}</table>
{% if excluded_hidden %}<p class="muted">… {{ excluded_hidden }} more in the CSV.</p>{% endif %}{% endif %}
</body>
</html>
"""

MAX_EXCLUDED_ROWS = 500


def render_html(stats: dict, rows: list | None = None) -> str:
    """A standalone page; `rows` (SplitRow) adds the table of excluded files."""
    from jinja2 import Environment, StrictUndefined

    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    header, table, hidden = split_table(stats)
    excluded = [r for r in rows or [] if r.split is None]
    return env.from_string(_PAGE).render(
        stats={"materialized": None, "dataset": "", "csv": "", **stats}, mode=_mode_text(stats),
        summary=summary_rows(stats), excluded=_excluded_text(stats), moved=_moved_text(stats), header=header,
        table=table, hidden=hidden, targets=target_lines(stats), decision=decision_lines(stats), excluded_rows=excluded[:MAX_EXCLUDED_ROWS],
        excluded_hidden=max(0, len(excluded) - MAX_EXCLUDED_ROWS))
