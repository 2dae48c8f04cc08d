"""Errors meant for people. Only the CLI catches them: one line, a tip, exit code 2."""


class AuditorError(Exception):
    """An error the user can act on. `tip` says what to do about it."""

    def __init__(self, message: str, tip: str = ""):
        super().__init__(message)
        self.message = message
        self.tip = tip


class ConfigError(AuditorError):
    """A bad option, policy key or value."""


class DatasetError(AuditorError):
    """The dataset cannot be audited at all (missing, empty, malformed manifest)."""


class BackboneError(AuditorError):
    """No usable backbone: weights missing or unreadable."""
