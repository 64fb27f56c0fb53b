# -*- test-case-name: tests.unit.agent.test_agent_local_ae,tests.unit.agent.test_agent_ae_model -*-
"""Agent-local state: the services and checks this agent registered (config files and
``/v1/agent/service/register``), their check runners and anti-entropy to the catalog.

Below ``http`` (which serves it through ``/v1/agent/service*`` and ``/v1/agent/check*``) and
above ``catalog``/``state``; the composition root (``wanfedtx.agent``) builds it.
"""
