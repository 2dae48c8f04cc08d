"""Fixtures shared by the similarity tests."""

import contextlib

import pytest


@pytest.fixture
def advised_arrays(monkeypatch):
    """`advise(module)` replaces memory.random_access where `module` imported it by a spy and returns the list of
    arrays the code under test then advises (in order)."""
    advised = []

    @contextlib.contextmanager
    def spy(array):
        advised.append(array)
        yield array

    def advise(module):
        monkeypatch.setattr(module, "random_access", spy)
        return advised

    return advise
