"""Klein apps for Consul's HTTP API (``/v1/...``): blocking queries, ``?dc`` forwarding."""
