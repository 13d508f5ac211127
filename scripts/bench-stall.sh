#!/usr/bin/env bash
# bench-stall.sh [--kills N] [--clients N] [--policy group|process] [--gap MIN:MAX]
#                [--retry-ms MS] [--seed S] [--out DIR]
#
# The restart stall (issue 13): from SIGKILL to a client's first answered
# replayed request, with the supervisor restarting the server at once.
#
# Starts duet ($DUET_BIN, else target/release/duet, else a fresh release
# build) with a journal (--journal DIR/nvram, --journal-policy P, default
# group) and one continuously available share, and runs the example
# `bench_client stall` (server/examples/bench_client.rs, built here in
# release): it is the supervisor and N client threads (default 1), on one
# clock (CLOCK_MONOTONIC). Each client holds a persistent handle (DH2Q with
# the persistent flag) and writes 4 KiB blocks in a loop. N times (default
# 100), 0.2-0.6 s (--gap) after every client is writing again, the
# supervisor notes the instant and sends SIGKILL, reaps the server and
# starts it again at once. A client whose connection drops tries a TCP
# connect every --retry-ms (default 10; each connect given 100 ms, since a
# SYN sent while the killed server's listener is torn down can be lost and
# TCP would resend it only after 1 s) until one is taken, then NEGOTIATE
# (same ClientGuid), SESSION_SETUP with PreviousSessionId, TREE_CONNECT,
# DH2C for its handle, and resends its unanswered WRITE with
# SMB2_FLAGS_REPLAY_OPERATION.
#
# Measured per kill and client, from the supervisor's instant before kill(2):
#   stall   to the replayed WRITE's answer (the issue's measure);
#   delay   the client's own reconnect delay: from the server's "listening"
#           line to the start of the client's connect that was taken (its
#           backoff beyond the server's downtime; at most --retry-ms);
#   beyond  stall - delay (target: p99 < 1 s);
# and per restart the server's exec to "listening" (read off its stderr).
# Prints p50, p99 and max of each, then one line
#   kills K, clients C, samples S, requests R, errors E
# and exits non-zero if a client saw an error (a failed reconnect step, an
# error status, a failed replay, an acknowledged block that reads back
# wrong at the end, a connection lost without a kill) or a kill was missed.
# The run's folder (duet.log, samples.tsv: one line per kill and client) is
# kept with --out or when the run fails.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kills=100 clients=1 policy=group gap=0.2:0.6 retry=10 seed=1 out=""
while [ $# -gt 0 ]; do
  case $1 in
    --kills) kills=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --policy) policy=$2; shift 2 ;;
    --gap) gap=$2; shift 2 ;;
    --retry-ms) retry=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,38p' "$0"; exit 0 ;;
    *) echo "bench-stall.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ -z "${DUET_BIN:-}" ] && [ -x "$repo/target/release/duet" ]; then
  DUET_BIN=$repo/target/release/duet
fi
bin=$(duet_bin)
client=${BENCH_CLIENT:-}
if [ -z "$client" ]; then
  target=$(cd "$repo" && cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  (cd "$repo" && nice cargo build --release -q -p server --example bench_client) >&2
  client=$target/release/examples/bench_client
fi

keep=0
if [ -n "$out" ]; then keep=1; mkdir -p "$out"; dir=$(cd "$out" && pwd); else dir=$(mktemp -d /tmp/duet-bench-stall.XXXXXX); fi
rm -rf "$dir/share" "$dir/nvram" "$dir/state" "$dir/duet.log" "$dir/samples.tsv"
mkdir -p "$dir/share"
port=$(free_port)
log "bench-stall: dir $dir, port $port, $kills kills, $clients clients, policy $policy, retry ${retry} ms"

rc=0
ulimit -c unlimited 2>/dev/null || true # a server that dies by itself leaves a core in the folder
"$client" stall --port "$port" --share stall --kills "$kills" --clients "$clients" --gap "$gap" \
  --retry-ms "$retry" --seed "$seed" --log "$dir/duet.log" --samples "$dir/samples.tsv" \
  --user "$DUET_USER" --password "$DUET_PASS" -- \
  "$bin" serve --listen "127.0.0.1:$port" --share "stall=$dir/share" --ca stall \
  --user "$DUET_USER:$DUET_PASS" --state-dir "$dir/state" --journal "$dir/nvram" --journal-size 64M \
  --journal-policy "$policy" --log-level "${DUET_LOG_LEVEL:-info}" || rc=$?

if [ "$rc" = 0 ] && [ "$keep" = 0 ]; then
  rm -rf "$dir"
elif [ "$rc" != 0 ]; then
  log "bench-stall: failed; kept $dir (duet.log, samples.tsv)"
fi
exit "$rc"
