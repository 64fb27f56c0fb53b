# -*- test-case-name: tests.unit.tls.test_tls_certs,tests.unit.tls.test_tls_cli -*-
"""TLS for wanfedtx: agent CA and certificate creation, and TLS context builders.

* :mod:`wanfedtx.tls.certs` creates the agent CA and server/client/cli certificates the way
  ``consul tls ca create`` / ``consul tls cert create`` do, and writes them with Consul's file
  names.
* :mod:`wanfedtx.tls.configurator` builds pyOpenSSL connection creators for the RPC port
  (incoming ALPN with client certs, outgoing ALPN + SNI, and the legacy ``verify_*`` path).
* :mod:`wanfedtx.tls.errors` holds every exception this package raises.
"""
