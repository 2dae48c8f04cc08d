"""Shared intermediate results computed from the audit context (declared lazily on it in context.py),
so that any check may ask for them, in any order, and none is computed twice."""
