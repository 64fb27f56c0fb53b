"""Connect: the built-in certificate authority (roots, leaves) of a datacenter."""
