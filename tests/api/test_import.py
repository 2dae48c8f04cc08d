"""`import auditor` as a user does it, in a fresh interpreter: fast, and nothing heavy loaded until an audit runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("tensorflow", "keras", "numpy", "scipy", "sklearn", "faiss", "PIL", "typer", "rich", "jinja2",
         "matplotlib", "imagehash")
# A generous bound: the import itself takes milliseconds; this only has to hold on a loaded 2-core machine.
MAX_IMPORT_S = 0.5

PROBE = """
import json, sys
{code}
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def fresh(code: str, *flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *flags, "-c", PROBE.format(code=code, heavy=HEAVY)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def heavy_modules(code: str) -> list[str]:
    result = fresh(code)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_and_the_public_names_load_nothing_heavy():
    code = ("import auditor\n"
            "names = (auditor.audit, auditor.audit_keras, auditor.Report, auditor.AuditorError, auditor.ConfigError,\n"
            "         auditor.DatasetError, auditor.BackboneError, auditor.Status, auditor.Severity)\n"
            "assert auditor.Report.__module__ == 'auditor.report' and callable(auditor.audit_keras)\n"
            "assert set(auditor.__all__) <= set(dir(auditor))")
    assert heavy_modules(code) == []


def test_the_probe_sees_heavy_modules():
    """The negative control: the runner does import the heavy stack, and the probe reports it."""
    assert {"numpy", "PIL"} <= set(heavy_modules("import auditor.runner"))


def test_unknown_name_is_an_attribute_error():
    result = fresh("import auditor\ntry:\n    auditor.nope\nexcept AttributeError as e:\n    print(e)")
    assert "module 'auditor' has no attribute 'nope'" in result.stdout


def test_import_is_fast():
    """Best of three fresh interpreters: `import auditor` and loading the API's names, timed in the interpreter
    (`-X importtime` does not see modules loaded through importlib, as the lazy names are)."""
    code = ("import time\n"
            "started = time.perf_counter()\n"
            "import auditor\n"
            "auditor.audit, auditor.audit_keras, auditor.Report, auditor.AuditorError\n"
            "print(time.perf_counter() - started)")
    times = []
    for _ in range(3):
        result = fresh(code)
        assert result.returncode == 0, result.stderr[-2000:]
        times.append(float(result.stdout.strip().splitlines()[0]))
    assert min(times) < MAX_IMPORT_S, times
