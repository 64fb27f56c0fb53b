# -*- test-case-name: tests.unit.agent.test_agent_limits -*-
"""The agent: wires the parts into one ``MultiService`` built from a ``RuntimeConfig``.

``wanfedtx.agent.agent.Agent`` is the service; this package module stays import-light so that
the ``wanfed`` command can build its parser without importing Twisted Web and Klein.
"""
