"""Fixtures of the federation-state unit tests (helpers live in ``federation_support``)."""

from __future__ import annotations

import pytest
from federation_support import Net
from twisted.internet import task


@pytest.fixture
def net() -> Net:
    return Net(task.Clock())
