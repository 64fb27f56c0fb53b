# -*- test-case-name: tests.unit.test_cli -*-
"""The ``wanfed`` command line."""
