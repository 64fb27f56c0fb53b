# -*- test-case-name: tests.unit.agent.test_agent_units -*-
"""Errors raised while starting the agent (node ID, listeners)."""

from __future__ import annotations


class AgentError(Exception):
    """The agent cannot start; the message says what is wrong and what to do."""
