#!/usr/bin/env bash
# The long fuzz profile: every parser fuzz test with WANFED_FUZZ_EXAMPLES examples (default
# 100,000), one test at a time (a 2-core machine), niced. Appends one line per test to
# $OUT (default fuzz-long.tsv): test id, examples asked, examples run (hypothesis statistics),
# seconds, result, why hypothesis stopped. Pass test ids as arguments to run only those.
#   bench/soak/fuzz_long.sh                      # all of them, in the order below
#   WANFED_FUZZ_EXAMPLES=1000 bench/soak/fuzz_long.sh tests/unit/test_framing.py
set -uo pipefail
cd "$(dirname "$0")/../.."
N=${WANFED_FUZZ_EXAMPLES:-100000}
OUT=${OUT:-fuzz-long.tsv}
PY=${PY:-python}
TESTS=(
  # ClientHello (gateway SNI/ALPN parser)
  tests/unit/gateway/test_gateway_clienthello.py::test_fuzz_random_bytes
  tests/unit/gateway/test_gateway_clienthello.py::test_fuzz_mutated_real_hellos
  # wanfed frames (WAN gossip through gateways)
  tests/unit/wanfed/test_wanfed_framing.py::test_fuzz_round_trip_any_chunking
  tests/unit/wanfed/test_wanfed_framing.py::test_fuzz_decoder_random_bytes_frames_or_frame_error
  tests/unit/wanfed/test_wanfed_framing.py::test_fuzz_receiver_bad_input_closes_with_log_never_crashes
  # gossip packets and streams
  tests/unit/gossip/test_gossip_fuzz.py::test_packet_decode_of_encode_is_identity
  tests/unit/gossip/test_gossip_fuzz.py::test_stream_decode_of_encode_is_identity
  tests/unit/gossip/test_gossip_fuzz.py::test_random_packets
  tests/unit/gossip/test_gossip_fuzz.py::test_mutated_packets
  tests/unit/gossip/test_gossip_fuzz.py::test_mutated_compound_inside
  tests/unit/gossip/test_gossip_fuzz.py::test_random_lzw
  tests/unit/gossip/test_gossip_fuzz.py::test_lzw_roundtrip
  tests/unit/gossip/test_gossip_fuzz.py::test_random_encrypted_packets
  tests/unit/gossip/test_gossip_fuzz.py::test_wrong_key_and_tampered_ciphertext
  tests/unit/gossip/test_gossip_fuzz.py::test_random_streams
  tests/unit/gossip/test_gossip_fuzz.py::test_mutated_streams
  tests/unit/gossip/test_gossip_fuzz.py::test_oversize_announcements
  # RPC frames
  tests/unit/rpc/test_rpc_fuzz.py::test_codec_decode_of_encode_is_identity
  tests/unit/rpc/test_rpc_fuzz.py::test_fuzz_codec
  tests/unit/rpc/test_rpc_fuzz.py::test_fuzz_port
  # raft messages, frames and log recovery
  tests/unit/raft/test_raft_messages.py::test_round_trip
  tests/unit/raft/test_raft_messages.py::test_mutated_bytes_decode_or_raise_clearly
  tests/unit/raft/test_raft_messages.py::test_arbitrary_msgpack_values
  tests/unit/raft/test_raft_transport.py::test_frames_reassemble_across_any_split
  tests/unit/raft/test_raft_transport.py::test_garbage_gives_clear_error_or_waits
  tests/unit/raft/test_raft_storage.py::test_fuzz_segment_recovery
  # HTTP requests and bodies
  tests/unit/http/test_http_limits_channel.py::test_random_requests_never_log_a_traceback
  tests/unit/http/test_http_state_bad_input.py::test_fuzz_catalog_bodies
  tests/unit/http/test_http_state_bad_input.py::test_fuzz_kv_put
  tests/unit/http/test_http_state_bad_input.py::test_fuzz_agent_service_register
  tests/unit/federation/test_federation_endpoints.py::test_fuzz_apply_decoder
  # HCL/JSON configuration
  tests/unit/config/test_config_fuzz.py::test_fuzz_hcl
  tests/unit/config/test_config_fuzz.py::test_fuzz_json
  tests/unit/config/test_config_fuzz.py::test_fuzz_bytes
  # framing, host:port, TLS material
  tests/unit/test_framing.py::test_random_bytes_never_raise
  tests/unit/test_hostport.py::test_split_never_raises_anything_but_value_error
  tests/unit/tls/test_tls_fuzz.py::test_bad_pem_gives_tls_errors
)
(($#)) && TESTS=("$@")
for t in "${TESTS[@]}"; do
  start=$(date +%s.%N)
  log=$(WANFED_FUZZ_EXAMPLES=$N nice -n 19 "$PY" -m pytest -q -p no:randomly -o timeout=0 \
        --hypothesis-show-statistics "$t" 2>&1)
  rc=$?
  secs=$(echo "$(date +%s.%N) - $start" | bc)
  ran=$(grep -oE '[0-9]+ passing, [0-9]+ failing' <<<"$log" | awk '{s+=$1} END {print s}')
  why=$(grep -oE 'Stopped because .*' <<<"$log" | head -1 | sed 's/Stopped because //')
  result=$([[ $rc == 0 ]] && echo passed || echo "FAILED")
  printf '%s\t%s\t%s\t%.0f\t%s\t%s\n' "$t" "$N" "${ran:-?}" "$secs" "$result" "$why" | tee -a "$OUT"
  [[ $rc == 0 ]] || printf '%s\n' "$log" > "$OUT.$(basename "${t//::/.}").log"
done
