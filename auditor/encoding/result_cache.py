"""Check results keyed by everything they depend on, so a re-run over an unchanged dataset recomputes
no check ("never compute twice" applies to statistics as much as to embeddings).

The key hashes: auditor's own code (every source file and template, so an upgrade or a local edit
recomputes), the configuration that affects results, the backbone's cache key, and every record's
(path, split, label, source, content hash) plus the walk's findings. Checks are seeded, so the same
key means the same evidence. The policy is not in the key — evidence is judged afterwards — except the
policy values a check's computation itself reads (`Check.evidence_policy`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from functools import lru_cache
from pathlib import Path

from auditor.context import AuditContext

# Settings that change how fast, not what: they stay out of the key.
NOT_IN_KEY = {"cache_dir", "use_cache", "workers", "batch_size", "engine", "policy"}


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    package = Path(__file__).resolve().parent.parent  # the whole auditor package, not just encoding/
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.suffix in {".py", ".j2", ".html", ".css", ".js"}):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def inputs_key(ctx: AuditContext) -> str:
    digest = hashlib.sha256(code_fingerprint().encode())
    settings = {f.name: getattr(ctx.config, f.name) for f in dataclasses.fields(ctx.config) if f.name not in NOT_IN_KEY}
    digest.update(repr(sorted(settings.items(), key=lambda kv: kv[0])).encode())
    digest.update(str(getattr(ctx.backbone, "cache_key", "no-backbone")).encode())
    for record, sha in zip(ctx.records, ctx.encoded.record_sha):
        digest.update(f"{record.path}\0{record.split}\0{record.label}\0{record.source}\0{sha}\n".encode())
    for issue in ctx.index.issues:
        digest.update(f"{issue.path}\0{issue.kind}\0{issue.message}\n".encode())
    for position, problem in sorted(ctx.encoded.read_problems.items()):
        digest.update(f"{position}\0{problem.kind}\n".encode())
    return digest.hexdigest()


def evidence_key(inputs: str, check, policy) -> str:
    """One check's key: the audit's inputs, the check's id, and the policy values its computation reads."""
    import dataclasses as dc

    from auditor.checks.base import ALL_POLICY

    if check.evidence_policy == ALL_POLICY:
        read = {f.name: getattr(policy, f.name) for f in dc.fields(policy)}
    else:
        read = {name: getattr(policy, name) for name in check.evidence_policy}
    digest = hashlib.sha256(f"{inputs}\0{check.id}\0".encode())
    digest.update(repr(sorted(read.items(), key=lambda kv: kv[0])).encode())
    return digest.hexdigest()
