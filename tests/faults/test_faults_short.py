"""The fault suite: two datacenters of three servers and two mesh gateways each, in network
namespaces, under a KV load with and without ``?dc=``, through a seeded schedule of faults
(SIGKILL of a server and of a leader, SIGSTOP of a leader, loss of a gateway, a partition of the
secondary from the primary, 200 ms delay and 5 % loss between the datacenters).

CI runs the short profile (about a minute of faults, each kind at least once). With
``WANFED_FAULTS_LONG=1`` the long one runs (``WANFED_FAULTS_SECONDS``, default 600, of 60 s
partitions, 20 s gateway losses and 30 s of delay and loss); ``bench/soak/faults_soak.py`` runs
either outside pytest and prints the figures docs/reliability.md reports.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import pytest
from faults_run import KINDS, LONG, SHORT, Runner

pytestmark = [pytest.mark.integration, pytest.mark.netns]

LONG_RUN = os.environ.get("WANFED_FAULTS_LONG") == "1"
PROFILE = (
    attrs.evolve(LONG, seconds=float(os.environ.get("WANFED_FAULTS_SECONDS", "600")))
    if LONG_RUN
    else SHORT
)


@pytest.mark.timeout(PROFILE.seconds * 2 + 240)
def test_federation_survives_the_fault_schedule(tmp_path: Path) -> None:
    report = Runner(tmp_path, PROFILE).run()
    print(report)
    assert not report.unexpected_exits, report.unexpected_exits  # (it ends the schedule early)
    # every fault kind ran at least once and the load got through it
    assert {e.kind for e in report.events} == set(KINDS), report.events
    assert report.acked_puts > 100 and report.acked_unique > 20
    assert report.lost == 0
    assert report.linearizable == "linearizable"
    # ?dc= requests went through the other gateway while one was down (failures are counted;
    # a gateway that never failed over would fail about half of them)
    ok, failed = report.gateway_xdc
    assert ok > 0 and failed <= 0.2 * (ok + failed), report.gateway_xdc
    assert not report.failures, report.failures
