"""Shared fixtures: the reactor, a fail-on-logged-errors guard, temporary data dirs.

pytest-twisted installs the default reactor. Tests that run real sockets use
``@pytest_twisted.ensureDeferred`` (or ``inlineCallbacks``) and the ``reactor`` fixture.
``logged`` collects every log event of a test (Twisted's global log publisher).
``WANFED_FUZZ_EXAMPLES=N`` loads the ``fuzz-long`` hypothesis profile: N examples for every
property test without a count of its own (the parser fuzz tests read the same variable), no
deadline, no example database (docs/reliability.md has the 100,000-example runs).
Any event logged with a failure (``log.failure``) or at level critical during a test fails that
test, unless the test is marked ``@pytest.mark.allow_logged_errors``.
A failing test's report ends with the last events Twisted's log publisher saw during it (the
agents' own log: what a timed-out wait was waiting for; ``WANFED_LOG_TAIL=N`` keeps N).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Generator, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from log_support import captured_logs
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

settings.register_profile(
    "fuzz-long",
    max_examples=int(os.environ.get("WANFED_FUZZ_EXAMPLES") or 100),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Hypothesis' default 200 ms deadline per example is a timing assertion: on a loaded 2-core
# machine (two suites at once) an ordinary example can take longer. No deadline; each test's
# example count bounds its time.
settings.register_profile("wanfed", deadline=None)
if os.environ.get("WANFED_FUZZ_EXAMPLES"):
    settings.load_profile("fuzz-long")
else:
    settings.load_profile("wanfed")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_logged_errors: the test expects failures to be logged"
    )
    config.addinivalue_line(
        "markers", "host_network: an e2e test that stays in the machine's network namespace"
    )


@pytest.fixture
def reactor() -> Any:
    from twisted.internet import reactor as _reactor

    return _reactor


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    """Every event logged while the test runs, in order."""
    with captured_logs() as events:
        yield events


# how many log events a failing test's report shows
RECENT_LOG_EVENTS = int(os.environ.get("WANFED_LOG_TAIL", "400"))


def _log_line(event: dict[str, Any]) -> str:
    level = event.get("log_level")
    return (f"{event.get('log_time', 0.0):.3f} {getattr(level, 'name', '-')} "
            f"[{event.get('log_namespace', '-')}] {formatEvent(event)}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[
        None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    recent = getattr(item, "wanfed_recent_logs", None)
    if report.failed and recent:
        report.sections.append((f"Captured twisted log (last {len(recent)} events)",
                                "\n".join(_log_line(e) for e in list(recent))))


@pytest.fixture(autouse=True)
def fail_on_logged_errors(request: pytest.FixtureRequest) -> Iterator[list[dict[str, Any]]]:
    errors: list[dict[str, Any]] = []
    recent: deque[dict[str, Any]] = deque(maxlen=RECENT_LOG_EVENTS)
    request.node.wanfed_recent_logs = recent

    def observer(event: dict[str, Any]) -> None:
        recent.append(event)
        if "log_failure" in event or event.get("log_level") is LogLevel.critical:
            errors.append(event)

    globalLogPublisher.addObserver(observer)
    try:
        yield errors
    finally:
        globalLogPublisher.removeObserver(observer)
    if errors and request.node.get_closest_marker("allow_logged_errors") is None:
        from twisted.logger import formatEvent

        lines = []
        for e in errors:
            lines.append(formatEvent(e))
            if "log_failure" in e:
                lines.append(e["log_failure"].getTraceback())
        pytest.fail("errors were logged during the test:\n" + "\n".join(lines))
