"""Shared fixtures: a seeded generator per test, and floating-point errors raised, not warned."""

import zlib

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _raise_on_fp_errors():
    """Overflow, invalid operations and division by zero fail the test (underflow to 0 is benign)."""
    old = np.seterr(all="raise", under="ignore")
    yield
    np.seterr(**old)


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A generator seeded from the test's name: reproducible, different per test."""
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))
