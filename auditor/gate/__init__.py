"""The CI gate: settings and policy files, baselines of accepted findings, and the merge audit (--against)."""
