"""The user guide runs: every ``sh`` block of ``docs/guide.md``, in order, as a user types them.

The blocks of the guide's "Install" section run first, in this machine's network namespace
(``pip install .`` needs the package index), with ``HOME`` set to a temporary directory; the
environment and working directory they leave are carried into the rest, which runs in a private
network and PID namespace (``unshare``): the guide's fixed loopback addresses then never clash
with another test run, and every process the guide starts in the background dies with the
namespace. A block that fails stops the run; the test shows its output and the logs the guide's
processes wrote.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "guide.md"
INSTALL_SECTION = "Install"
_FENCE = re.compile(r"^```(\w*)\s*$")


def guide_blocks(text: str) -> list[tuple[str, str]]:
    """(section heading, block text) for every fenced ``sh`` block, in document order."""
    blocks: list[tuple[str, str]] = []
    section = ""
    lang: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        if lang is None:
            if line.startswith("## "):
                section = line[3:].strip()
            opened = _FENCE.match(line)
            if opened:
                lang, lines = opened.group(1), []
        elif line.startswith("```"):
            if lang == "sh":
                blocks.append((section, "\n".join(lines)))
            lang = None
        else:
            lines.append(line)
    return blocks


def _script(blocks: list[tuple[str, str]], prologue: str, epilogue: str) -> str:
    parts = [prologue, "set -eu"]
    for number, (section, body) in enumerate(blocks, 1):
        parts.append(f"echo '=== guide block {number} ({section})'")
        parts.append(body)
    parts.append(epilogue)
    return "\n".join(parts) + "\n"


def test_guide_blocks_are_found() -> None:
    blocks = guide_blocks(GUIDE.read_text())
    sections = {section for section, _ in blocks}
    assert blocks[0][0] == INSTALL_SECTION
    assert {"Certificates", "ACLs", "Stopping everything"} <= sections
    # text blocks (sample output) are not run
    assert all("Node     ID" not in body for _, body in blocks)


def _need_namespaces() -> str:
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("ip") is None or os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs root, unshare and ip for the user guide test")
        pytest.skip("needs root, unshare and ip to run the guide in a private namespace")
    return unshare


def _failure_report(output: str, home: Path) -> str:
    logs = []
    for log in sorted((home / "wanfed-guide").glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-30:]
        logs.append(f"--- {log.name}\n" + "\n".join(tail))
    return output[-8000:] + "\n" + "\n".join(logs)


@pytest.mark.host_network  # its install step needs the package index; it isolates the rest
def test_every_shell_block_of_the_user_guide_runs(tmp_path: Path) -> None:
    unshare = _need_namespaces()
    blocks = guide_blocks(GUIDE.read_text())
    install = [b for b in blocks if b[0] == INSTALL_SECTION]
    rest = [b for b in blocks if b[0] != INSTALL_SECTION]
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSUL_", "WANFED_"))}
    env.pop("PYTHONPATH", None)  # the guide installs the package; it must not see the checkout's
    real_home = Path(os.environ.get("HOME", "/root"))
    env.setdefault("PIP_CACHE_DIR", str(real_home / ".cache" / "pip"))
    env["HOME"] = str(home)
    state = tmp_path / "state"
    state.mkdir()

    first = subprocess.run(
        ["bash", "-c", _script(install, "", f"export -p > {state}/env.sh; pwd > {state}/cwd")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert first.returncode == 0, first.stdout + first.stderr

    prologue = f'ip link set lo up\nsource {state}/env.sh\ncd "$(cat {state}/cwd)"'
    second = subprocess.run(
        [unshare, "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
         "bash", "-c", _script(rest, prologue, "echo '=== guide done'")],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=600,
    )
    output = second.stdout
    assert second.returncode == 0 and "=== guide done" in output, _failure_report(output, home)
