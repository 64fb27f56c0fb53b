"""Consul's ACL system: the rules language, authorizers, builtin IDs and the token resolver."""
