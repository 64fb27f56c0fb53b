"""Build script: the metadata is in setup.cfg; this adds the gateway's compiled relay.

The extension is optional: without a C compiler and the Python headers the install still
succeeds and the gateway's loop data path relays in Python (``-loop-relay auto``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "wanfedtx.gateway._splicerelay",
            ["wanfedtx/gateway/csrc/relay.c", "wanfedtx/gateway/csrc/module.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
