"""ACL on servers: the ACL.* RPC endpoints and the leader routine that initializes ACLs."""
