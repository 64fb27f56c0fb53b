# -*- test-case-name: tests.unit.federation -*-
"""Federation states: one record per datacenter of its mesh gateways, kept in the primary.

:mod:`.structs` decodes and shapes them, :mod:`.fsm` applies raft type 30, :mod:`.endpoints`
serves ``FederationState.*`` over RPC, :mod:`.antientropy` pushes this datacenter's gateways to
the primary (and prunes states of gone datacenters there), :mod:`.replication` copies the
primary's states into a secondary, :mod:`.server` wires them into one server, and
:mod:`.gateway_locator` picks the mesh gateway to dial for a datacenter from the stored states.
"""
