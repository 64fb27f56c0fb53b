"""Fixtures of the ACL unit tests (helpers live in ``acl_support``)."""

from __future__ import annotations

import pytest
from acl_support import Net
from twisted.internet import task


@pytest.fixture
def net() -> Net:
    return Net(task.Clock())
