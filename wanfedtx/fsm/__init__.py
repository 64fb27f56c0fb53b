# -*- test-case-name: tests.unit.fsm.test_fsm_machine -*-
"""The replicated state machine: numbered msgpack commands applied to the state store.

:mod:`wanfedtx.fsm.commands` numbers and encodes commands like the reference's
``structs.MessageType``; :class:`wanfedtx.fsm.machine.FSM` applies them and snapshots/restores the
store for raft; :mod:`wanfedtx.fsm.consensus` holds the consensus seam and the single-server
``LocalConsensus`` used until raft is wired in.
"""
