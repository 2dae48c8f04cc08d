"""auditor/text.py: names with control characters or undecodable bytes are shown escaped, kept exact in
JSON, and hash as their bytes (finding ids of ordinary names unchanged)."""

from __future__ import annotations

import hashlib
import json
import os

from auditor.report import stable_finding_id
from auditor.text import has_control_characters, is_undecodable, json_text, printable, printable_tree, utf8_bytes

HOSTILE = os.fsdecode(b"bad\xffname \x1b[2J \x1b]0;title\x07 a\rb\nc \xe2\x80\xae.jpg")


def test_printable_escapes_controls_undecodable_bytes_and_bidi_overrides():
    shown = printable(HOSTILE)
    assert shown == "bad\\xffname \\x1b[2J \\x1b]0;title\\x07 a\\x0db\\x0ac \\u202e.jpg"
    assert all(ch.isprintable() for ch in shown)
    assert printable("plain/ünïcode name (1).jpg") == "plain/ünïcode name (1).jpg"
    assert printable("\x85\x9b\x7f") == "\\x85\\x9b\\x7f"  # C1 controls (CSI) and DEL too


def test_detectors():
    assert is_undecodable(HOSTILE) and has_control_characters(HOSTILE)
    assert not is_undecodable("é.jpg") and not has_control_characters("é.jpg")
    assert has_control_characters("x\u202ey") and not is_undecodable("x\u202ey")


def test_printable_tree_escapes_keys_and_values():
    assert printable_tree({"a\x1b": ["b\n", 1, None, {"c": "\udcff"}]}) == {"a\\x1b": ["b\\x0a", 1, None, {"c": "\\xff"}]}


def test_json_keeps_the_exact_name_and_is_valid_utf8():
    text = json_text({"path": HOSTILE})
    text.encode("utf-8")  # would raise on a raw surrogate
    assert "\x1b" not in text and "\r" not in text  # JSON escapes control characters itself
    back = json.loads(text)["path"]
    assert back == HOSTILE and os.fsencode(back) == os.fsencode(HOSTILE)


def test_ids_hash_names_as_bytes_and_ordinary_ids_do_not_change():
    assert utf8_bytes(HOSTILE) == os.fsencode(HOSTILE)
    # The id of an ordinary (UTF-8) name is what it always was: baselines stay valid.
    expected = hashlib.sha256(b"integrity\0broken_link\0" + "train/é.jpg".encode() + b"\0").hexdigest()[:16]
    assert stable_finding_id("integrity", "broken_link", ["train/é.jpg"]) == f"integrity:broken_link:{expected}"
    assert stable_finding_id("integrity", "non_utf8_name", [HOSTILE]).startswith("integrity:non_utf8_name:")
