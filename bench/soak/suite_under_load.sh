#!/usr/bin/env bash
# The flakiness budget: the full suite (the README's test command, `CI=true ./dev test`) three
# times in a row in one clone while a second clone runs the full suite over and over beside it,
# so that every measured run shares the 2-core machine with another whole run.
#   bench/soak/suite_under_load.sh            # clones HEAD into $OUT (default /tmp/suite-under-load)
#   RUNS=3 OUT=/tmp/sul bench/soak/suite_under_load.sh
# Writes $OUT/summary.txt (one line per run: which, commit, exit code, seconds, pytest's last
# line), $OUT/run-N.log, $OUT/loader-N.log and $OUT/loadavg.txt (one line a minute).
# Both clones are started as background jobs of this script, so they begin with SIGINT ignored,
# as a script's jobs do (commands that run until Ctrl-C must cope with that).
set -uo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-3}
OUT=${OUT:-/tmp/suite-under-load}
rm -rf "$OUT" && mkdir -p "$OUT"
git clone -q . "$OUT/loader" && git clone -q . "$OUT/measured"

loadavg() { while [[ ! -e "$OUT/STOP" ]]; do echo "$(date +%T) $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/loadavg.txt"; sleep 60; done; }
line() { grep -E '^=+ .*(passed|failed|error)' "$1" | tail -1; }

loader() {
  cd "$OUT/loader" || return
  local i=0
  while [[ ! -e "$OUT/STOP" ]]; do
    i=$((i + 1)); local start=$SECONDS
    CI=true ./dev test > "$OUT/loader-$i.log" 2>&1; local rc=$?
    echo "loader run $i ($(git log --oneline -1 | cut -c1-7)) rc=$rc $((SECONDS - start))s $(line "$OUT/loader-$i.log")" >> "$OUT/summary.txt"
  done
}

loadavg &
loader &
sleep 60  # the loader installs its environment and is inside its suite when the first run starts
cd "$OUT/measured"
failed=0
for i in $(seq 1 "$RUNS"); do
  start=$SECONDS
  CI=true ./dev test > "$OUT/run-$i.log" 2>&1; rc=$?
  [[ $rc == 0 ]] || failed=1
  echo "measured run $i ($(git log --oneline -1 | cut -c1-7)) rc=$rc $((SECONDS - start))s $(line "$OUT/run-$i.log")" >> "$OUT/summary.txt"
done
touch "$OUT/STOP"
wait
cat "$OUT/summary.txt"
exit $failed
