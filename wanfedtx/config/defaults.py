# -*- test-case-name: tests.unit.config -*-
"""Consul's default and dev-mode config sources, as HCL text parsed like any other source.

``DEFAULT_HCL`` mirrors Consul's ``DefaultSource`` for every key we accept (values from
``agent/config/default.go`` and ``agent/consul/config.go`` of the reference era), ``DEV_HCL``
mirrors ``DevSource`` (what ``-dev`` adds). Keys without a default here default to their zero
value (empty string, false, 0, empty list) when the runtime config is built.
"""

from __future__ import annotations

DEFAULT_HCL = """
acl = {
  default_policy = "allow"
  down_policy = "extend-cache"
  policy_ttl = "30s"
  token_ttl = "30s"
  role_ttl = "30s"
}
bind_addr = "0.0.0.0"
bootstrap = false
bootstrap_expect = 0
client_addr = "127.0.0.1"
datacenter = "dc1"
disable_host_node_id = true
domain = "consul."
encrypt_verify_incoming = true
encrypt_verify_outgoing = true
log_level = "INFO"
log_json = false
primary_gateways_interval = "30s"
protocol = 2
raft_protocol = 3
retry_interval = "30s"
retry_interval_wan = "30s"
server = false
tls_min_version = "tls12"
gossip_lan = {
  gossip_interval = "200ms"
  gossip_nodes = 3
  retransmit_mult = 4
  probe_interval = "1s"
  probe_timeout = "500ms"
  suspicion_mult = 4
}
gossip_wan = {
  gossip_interval = "500ms"
  gossip_nodes = 3
  retransmit_mult = 4
  probe_interval = "5s"
  probe_timeout = "3s"
  suspicion_mult = 6
}
limits = {
  http_max_conns_per_client = 200
  https_handshake_timeout = "5s"
  rpc_handshake_timeout = "5s"
  rpc_rate = -1
  rpc_max_burst = 1000
  rpc_max_conns_per_client = 100
  kv_max_value_size = 524288
  txn_max_req_len = 524288
  raft_max_entry_size = 4194304
  raft_partial_frame_budget = 33554432
  raft_frame_timeout = "10s"
  http_max_request_body = 1048576
  http_read_header_timeout = "10s"
}
performance = {
  leave_drain_time = "5s"
  raft_multiplier = 5
  rpc_hold_timeout = "7s"
}
ports = {
  dns = 8600
  http = 8500
  https = -1
  grpc = -1
  serf_lan = 8301
  serf_wan = 8302
  server = 8300
  proxy_min_port = 20000
  proxy_max_port = 20255
  sidecar_min_port = 21000
  sidecar_max_port = 21255
  expose_min_port = 21500
  expose_max_port = 21755
}
"""

DEV_HCL = """
bind_addr = "127.0.0.1"
log_level = "DEBUG"
server = true
gossip_lan = {
  gossip_interval = "100ms"
  probe_interval = "100ms"
  probe_timeout = "100ms"
  suspicion_mult = 3
}
gossip_wan = {
  gossip_interval = "100ms"
  probe_interval = "100ms"
  probe_timeout = "100ms"
  suspicion_mult = 3
}
connect = {
  enabled = true
}
performance = {
  raft_multiplier = 1
}
ports = {
  grpc = 8502
}
"""
