"""Untrusted text (file and folder names, labels, manifest cells) made safe to show.

File names are bytes on POSIX; Python turns bytes that are not UTF-8 into lone surrogates
(`os.fsdecode`, U+DC80–U+DCFF), and a name may hold any control character (an ANSI escape such as
ESC [2J clears a terminal, ESC ]0;…BEL retitles it, CR/LF forge report lines). auditor keeps the exact
name wherever it opens or identifies a file, and shows it through `printable` everywhere a person
reads it (terminal, Markdown, HTML, JUnit, stderr):

* an undecodable byte appears as `\\xff` (the byte's value),
* a control character (C0, DEL, C1) as `\\x1b`, `\\x0a`, … (never `\\n`: one form for all of them),
* a bidirectional-text override (U+202A–U+202E, U+2066–U+2069, U+200E/U+200F, U+061C), which
  reorders what is shown ("trojan source"), as `\\u202e`.

Backslashes themselves are left alone, so the display is readable but not reversible; report.json
keeps the exact names (see `json_text`).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_UNDECODABLE = re.compile("[\udc80-\udcff]")
# What json.dumps(ensure_ascii=False) leaves raw but a terminal or editor would act on: DEL, C1 controls,
# bidi overrides, and lone surrogates (which UTF-8 cannot even encode).
_JSON_ESCAPE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode: show the byte
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def printable(text: object) -> str:
    """`text` with every control character, bidi override and undecodable byte shown as an escape."""
    return _UNSAFE.sub(_escape, str(text))


def has_control_characters(text: str) -> bool:
    """True when showing `text` raw could move the cursor, recolour, retitle or reorder a display."""
    return _CONTROL.search(text) is not None


def is_undecodable(text: str) -> bool:
    """True when `text` came from bytes that are not valid UTF-8 (os.fsdecode's surrogate escapes)."""
    return _UNDECODABLE.search(text) is not None


def printable_tree(value: Any) -> Any:
    """A copy of a JSON-like value with `printable` applied to every string, keys included."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(k) if isinstance(k, str) else k: printable_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable_tree(v) for v in value]
    return value


def printable_report(report):
    """A copy of the report for display: every string in it passed through `printable`.

    Renderers for people (terminal, Markdown, HTML, JUnit) start from this copy, so no file name,
    label or message reaches them raw, whatever check produced it."""
    from auditor.report import CheckResult, Finding

    checks = [
        CheckResult(id=c.id, status=c.status, summary=printable(c.summary), metrics=printable_tree(c.metrics),
                    findings=[Finding(id=f.id, severity=f.severity, message=printable(f.message),
                                      paths=[printable(p) for p in f.paths], evidence=printable_tree(f.evidence))
                              for f in c.findings])
        for c in report.checks
    ]
    return replace(report, dataset=printable_tree(report.dataset), backbone=printable_tree(report.backbone),
                   checks=checks, notes=[printable(n) for n in report.notes])


def json_text(value: Any, indent: int | None = 2) -> str:
    """JSON that keeps exact names and can always be written as UTF-8.

    json.dumps escapes C0 control characters itself (`\\u001b`); DEL, C1 controls, bidi overrides and
    lone surrogates (a name that is not UTF-8, which cannot even be encoded) are written as JSON escapes
    too (`\\u009b`, `\\u202e`, `\\udcff`), exactly what `ensure_ascii=True` would write for them, so no
    raw control character is in the file. `json.loads` gives the same string back, and `os.fsencode` of
    it the original bytes. (Outside strings JSON text is ASCII, so the substitution only touches strings.)"""
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    return _JSON_ESCAPE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def utf8_bytes(text: str) -> bytes:
    """`text` as bytes for hashing: an undecodable name hashes as its original bytes; never raises."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no file name decodes to (from JSON, say)
        return text.encode("utf-8", "surrogatepass")


def plural(count: int, word: str, plural_word: str | None = None) -> str:
    """"1 class", "3 classes": the count and the word it takes."""
    return f"{count} {word if count == 1 else (plural_word or word + 's')}"
