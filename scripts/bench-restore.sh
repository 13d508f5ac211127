#!/usr/bin/env bash
# bench-restore.sh [--connections C] [--sessions S] [--opens O] [--rounds R]
#
# How fast a node that was killed comes back with many persistent handles
# (issue 13): duet serves a continuously available share with a journal
# (policy group); testdata/restore_load.py opens C x S x O files (default
# 100 connections x 10 sessions x 10 opens = 10,000 persistent handles in
# 1,000 sessions) with DH2Q and the persistent flag; then, R times (default
# 5), duet is killed with SIGKILL and started again at once. Per restart it
# prints the handles restored, the restore itself (from opening the journal
# to the model rebuilt, every retained handle given its file back, a
# checkpoint durable and the flag set: the server's own "journal ready ...
# took_ms"), and the whole start (from the exec to the
# "listening" line, polled every 2 ms), then the median of each.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
conns=100 sessions=10 opens=10 rounds=5
while [ $# -gt 0 ]; do
  case "$1" in
    --connections) conns=$2; shift 2 ;;
    --sessions) sessions=$2; shift 2 ;;
    --opens) opens=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "bench-restore.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
bin=$(duet_bin)
dir=$(mktemp -d /tmp/duet-bench-restore.XXXXXX)
pid="" load=""
cleanup() {
  [ -n "$load" ] && kill "$load" 2>/dev/null || true
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT
mkdir -p "$dir/share"
port=$(free_port)
cat >"$dir/duet.toml" <<TOML
listen = ["127.0.0.1:$port"]
state_dir = "state"
[limits]
max_connections_per_address = $((conns + 16))
max_sessions_per_connection = $((sessions + 4))
[journal]
path = "nvram"
size = 268435456
[[share]]
name = "bench"
path = "share"
continuous_availability = true
TOML

start() { # -> start-to-listening ms
  local before t0 t1
  before=$(grep -c "duet: listening" "$dir/duet.log" 2>/dev/null || true)
  t0=$(date +%s%N)
  (cd "$dir" && exec "$bin" serve --config duet.toml --user "$DUET_USER:$DUET_PASS" --log-level info \
     </dev/null >>"$dir/duet.log" 2>&1) &
  pid=$!
  echo "$pid" >"$dir/pid"
  while [ "$(grep -c "duet: listening" "$dir/duet.log" 2>/dev/null || true)" -le "${before:-0}" ]; do
    kill -0 "$pid" 2>/dev/null || { tail -20 "$dir/duet.log" >&2; exit 1; }
    sleep 0.002
  done
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 ))
}

start >/dev/null
pid=$(cat "$dir/pid")
exec 3> >(python3 "$(dirname "$0")/../testdata/restore_load.py" --port "$port" --share bench --user "$DUET_USER" \
  --password "$DUET_PASS" --connections "$conns" --sessions "$sessions" --opens "$opens" >"$dir/load.json")
load=$!
for _ in $(seq 6000); do [ -s "$dir/load.json" ] && break; sleep 0.1; done
[ -s "$dir/load.json" ] || { echo "bench-restore.sh: the load did not finish" >&2; exit 1; }
echo "load: $(cat "$dir/load.json")"
printf '| restart | handles restored | restore ms | start to listening ms |\n|---|---|---|---|\n'
restores=() starts=()
for r in $(seq "$rounds"); do
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.001; done
  ms=$(start)
  pid=$(cat "$dir/pid")
  n=$(grep "restored from the journal" "$dir/duet.log" | tail -1 | sed -n 's/.*retained=\([0-9]*\).*/\1/p')
  took=$(grep "journal ready" "$dir/duet.log" | tail -1 | sed -n 's/.*took_ms=\([0-9]*\).*/\1/p')
  restores+=("$took"); starts+=("$ms")
  echo "| $r | $n | $took | $ms |"
done
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median: restore $(med "${restores[@]}") ms, start to listening $(med "${starts[@]}") ms"
exec 3>&-
