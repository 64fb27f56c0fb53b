"""The ``wanfed`` command line."""
