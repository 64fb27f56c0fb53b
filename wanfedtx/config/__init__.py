# -*- test-case-name: tests.unit.agent.test_agent_hold_timeout,tests.unit.agent.test_agent_units -*-
"""Consul-compatible agent configuration: HCL1/JSON files, merging, defaults, validation.

Use ``load(LoadOptions(config_files=[...], flags={...}))`` to get a ``LoadResult`` whose
``runtime`` is the frozen ``RuntimeConfig``; every problem raises a ``ConfigError`` whose
``str()`` is one line naming the file, line and key path where they are known.
"""

from wanfedtx.config.builder import LoadOptions, LoadResult, load
from wanfedtx.config.errors import ConfigError
from wanfedtx.config.runtime import RuntimeConfig

__all__ = ["ConfigError", "LoadOptions", "LoadResult", "RuntimeConfig", "load"]
