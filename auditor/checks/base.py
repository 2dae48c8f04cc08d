"""What a check is: evidence computed from the audit context, judged by the policy afterwards.

`compute(ctx) -> Evidence` measures (counts, p-values, AUCs, the findings with their numbers) and never
reads the policy, so its result can be cached and reused however the policy changes.
`judge(evidence, policy) -> Verdict` compares the evidence with the policy's named thresholds: a pure,
cheap function, run on every audit, cached evidence or not. A check whose computation itself needs a
policy value (alpha sets how many permutations resolve a p-value) lists it in `evidence_policy`, and
only those values join its cache key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from auditor.report import CheckResult, Finding, Status


@dataclass
class Evidence:
    summary: str  # what was found, in words, with no threshold in it
    metrics: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    skipped: bool = False  # the check could not run; the summary says why
    own_status: Status | None = None  # set only by a check that still judges itself (see self_judged)

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "metrics": self.metrics, "findings": [f.to_dict() for f in self.findings],
                "skipped": self.skipped, "own_status": self.own_status.value if self.own_status else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Evidence":
        return cls(summary=data["summary"], metrics=data.get("metrics", {}),
                   findings=[Finding.from_dict(f) for f in data.get("findings", [])], skipped=bool(data.get("skipped")),
                   own_status=Status(data["own_status"]) if data.get("own_status") else None)


@dataclass
class Verdict:
    status: Status
    policy: str = ""  # the rule applied, in words ("fail above 0 %"), appended to the summary
    summary: str | None = None  # the judge's own wording, when the sentence depends on a threshold
    findings: list[Finding] | None = None  # the judge's selection, when which findings count depends on a threshold
    metrics: dict[str, Any] | None = None  # the evidence's metrics with the judge's flags added (a copy, never the cache's)


def skipped(reason: str, **metrics: Any) -> Evidence:
    return Evidence(summary=reason, metrics=metrics, skipped=True)


@dataclass(frozen=True)
class Check:
    id: str
    compute: Callable[[Any], Evidence]
    judge: Callable[[Evidence, Any], Verdict]
    evidence_policy: tuple[str, ...] = ()  # policy fields the computation itself reads (part of the cache key)

    def run(self, ctx: Any) -> CheckResult:
        """Compute and judge by the context's policy in one go (no result cache): for tests and notebooks."""
        return self.result(self.compute(ctx), ctx.config.policy)

    def result(self, evidence: Evidence, policy: Any) -> CheckResult:
        """The judged result. A skipped check stays skipped, whatever the policy."""
        if evidence.skipped:
            return CheckResult(id=self.id, status=Status.SKIPPED, summary=evidence.summary, metrics=evidence.metrics,
                               findings=list(evidence.findings))
        verdict = self.judge(evidence, policy)
        summary = verdict.summary if verdict.summary is not None else evidence.summary
        if verdict.policy:
            summary += f" (policy: {verdict.policy})"
        findings = verdict.findings if verdict.findings is not None else evidence.findings
        metrics = verdict.metrics if verdict.metrics is not None else evidence.metrics
        return CheckResult(id=self.id, status=verdict.status, summary=summary, metrics=metrics,
                           findings=list(findings))


def share_status(evidence: Evidence, max_percent: float, key: str, warned: bool) -> Status:
    """Fail when some split's share (`metrics.per_split.<split>.<key>`, in %) exceeds max_percent; else warn
    when `warned`; else pass. The rule of the checks that only inform unless a limit is set."""
    per_split = evidence.metrics.get("per_split", {})
    failing = [s for s, m in per_split.items() if m.get("images") and m[key] > max_percent]
    return Status.FAIL if failing else Status.WARN if warned else Status.PASS


def share_policy_text(max_percent: float) -> str:
    return "never fail" if max_percent >= 100 else f"fail above {max_percent:g} % of a split"



def self_judged(check_id: str, run: Callable[[Any], CheckResult]) -> Check:
    """A check not yet split into compute and judge: `run` reads the policy itself, so the whole policy is
    part of its cache key and the status it sets stands."""

    def compute(ctx: Any) -> Evidence:
        result = run(ctx)
        return Evidence(summary=result.summary, metrics=result.metrics, findings=result.findings,
                        skipped=result.status == Status.SKIPPED, own_status=result.status)

    def judge(evidence: Evidence, policy: Any) -> Verdict:
        return Verdict(status=evidence.own_status)

    return Check(id=check_id, compute=compute, judge=judge, evidence_policy=ALL_POLICY)


ALL_POLICY = ("*",)  # evidence_policy of a self-judged check: every policy value is in its cache key
