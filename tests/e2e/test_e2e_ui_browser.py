"""The federation page at ``/ui`` in a real headless Chromium, against the two-datacenter demo.

The demo's four processes (``wanfedtx.cli.demo.Federation``: servers on 127.0.1.1 and 127.0.2.1
with Consul's default ports, so this test must not run beside the other demo tests), with one
addition: each gateway's service gets a TCP check every second, so a stopped gateway turns
critical at once. The page, loaded from the primary's agent, shows both datacenters and their
servers; once the primary's gateway is stopped, the primary's card turns critical (the DOM is
polled with a deadline). Screenshots go to ``$WANFED_TEST_ARTIFACTS`` (else the test's tmp dir).

Needs Debian's ``chromium`` and ``chromium-driver`` and selenium (the ``test`` extra); without
them the test skips, except under ``CI=true`` where it fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wanfedtx.cli import demo
from wanfedtx.cli.demo import GATEWAY_PORTS, Federation, poll_until

pytestmark = pytest.mark.integration

IPS = {"primary": "127.0.1.1", "secondary": "127.0.2.1"}
UI = "http://127.0.1.1:8500/ui/"


def _missing() -> str:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e .[test])"
    for exe in ("chromium", "chromedriver"):
        if shutil.which(exe) is None:
            return f"{exe} not found (apt-get install chromium chromium-driver)"
    return ""


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    root = os.environ.get("WANFED_TEST_ARTIFACTS")
    path = Path(root) / "ui" if root else tmp_path / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def browser() -> Iterator[Any]:
    why = _missing()
    if why:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the browser test must run in CI: {why}")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _write_config_with_gateway_check(
    original: Callable[[Path, str, dict[str, str]], Path],
) -> Callable[[Path, str, dict[str, str]], Path]:
    def write(root: Path, dc: str, ips: dict[str, str]) -> Path:
        d = original(root, dc, ips)
        text = (d / "gateway.hcl").read_text().rstrip()
        check = (
            "  check {\n"
            f'    name = "gateway listening"\n    tcp = "{ips[dc]}:{GATEWAY_PORTS[dc]}"\n'
            '    interval = "1s"\n    timeout = "1s"\n  }\n'
        )
        (d / "gateway.hcl").write_text(text[: text.rfind("}")] + check + "}\n")
        return d

    return write


def _until(check: Callable[[], bool], seconds: float, what: str, driver: Any,
           shots: Path) -> None:
    if not poll_until(check, seconds, 0.2):
        driver.save_screenshot(str(shots / "failure.png"))
        raise AssertionError(f"{what} (within {seconds}s); page: {driver.page_source[:4000]}")


def test_ui_shows_both_datacenters_and_a_critical_gateway(
    tmp_path: Path, browser: Any, artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "_write_config", _write_config_with_gateway_check(demo._write_config))
    fed = Federation(tmp_path / "demo", IPS)
    try:
        fed.start(lambda _: None)
        assert fed.wait(120), "the demo's checks did not pass:\n" + _log_tails(fed.root)
        # The demo's addresses are fixed: another demo on this host would answer the checks.
        assert all(p.poll() is None for p in fed.procs), (
            "a process of the demo exited (is another demo running?):\n" + _log_tails(fed.root))
        browser.get(UI)

        # Read in one script call: the page redraws its cards every second, so an element
        # found by one call may be gone by the next.
        def card(dc: str, what: str) -> str:
            return str(browser.execute_script(
                "const c = document.querySelector(`.dc[data-dc=\"${arguments[0]}\"]`);"
                "return c ? (arguments[1] === 'health' ? c.dataset.health : c.innerText) : '';",
                dc, what) or "")

        def health(dc: str) -> str:
            return card(dc, "health")

        def text(dc: str) -> str:
            return card(dc, "text")

        def rows(selector: str) -> int:
            return int(browser.execute_script(
                "return document.querySelectorAll(arguments[0]).length;", selector))

        _until(lambda: health("primary") == "passing" and health("secondary") == "passing",
               30, "both datacenters show passing gateways", browser, artifacts)
        _until(lambda: "pri.primary" in text("primary") and "sec.secondary" in text("secondary"),
               15, "each card lists its server", browser, artifacts)
        _until(lambda: rows("#members tr[data-member]") == 2, 15, "two WAN members",
               browser, artifacts)
        _until(lambda: rows("#states tr[data-state]") == 2, 15, "two federation states",
               browser, artifacts)
        browser.save_screenshot(str(artifacts / "ui-federated.png"))
        # The page refreshes through blocking queries on the agent's API.
        urls = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        blocking = [u for u in urls if "index=" in u and "wait=" in u]
        assert any("/v1/internal/federation-states?" in u for u in blocking), urls
        assert any("/v1/health/service/mesh-gateway?dc=secondary&" in u for u in blocking), urls

        gateway = fed.procs[2]  # the primary's
        gateway.terminate()
        gateway.wait(timeout=30)
        _until(lambda: health("primary") == "critical", 10,
               "the primary turns critical once its only gateway is stopped", browser, artifacts)
        assert health("secondary") != "critical"
        browser.save_screenshot(str(artifacts / "ui-gateway-critical.png"))
        # No script error on the way (failed requests are logged too: those are expected).
        logs = browser.get_log("browser")
        (artifacts / "console.log").write_text("\n".join(str(e) for e in logs))
        assert not [e for e in logs if "Uncaught" in e.get("message", "")], logs
    finally:
        fed.stop()


def _log_tails(root: Path) -> str:
    """The last lines of each process's log (a failed start says why: a port in use, ...)."""
    out = []
    for log in sorted(root.glob("*/*.log")):
        lines = log.read_text(errors="replace").splitlines()[-8:]
        out.append(f"== {log.relative_to(root)}\n" + "\n".join(lines))
    return "\n".join(out)
