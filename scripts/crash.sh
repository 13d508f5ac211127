#!/usr/bin/env bash
# crash.sh: the crash-and-restore harness (issue 13).
#
#   scripts/crash.sh --kills N [--clients N] [--policy P] [--seed S]
#                    [--gap MIN:MAX] [--term-every N] [--durable auto|v1|v2]
#                    [--journal-size SIZE] [--no-journal] [--failpoints] [--out DIR]
#                    [-- EXTRA DUET ARGS]
#
# Starts duet ($DUET_BIN, else target/release/duet, else a fresh release
# build) with a journal (`--journal DIR/nvram --journal-policy P`, default
# group; --no-journal runs it without one) and N clients (default 8;
# testdata/crash_client.py, each its own
# process, each behaving like a Windows client: durable opens, reconnect
# with a new session and DHnC/DH2C, unanswered requests resent with the
# replay flag). A supervisor kills the server at random moments (every
# MIN..MAX seconds after it listens, default 0.3:2.0; SIGKILL, and SIGTERM
# for every --term-every'th kill, default 5) and restarts it at once.
# After the last kill the clients stop, check their files through the
# server against their own logs of acknowledged operations, and the
# supervisor stops the server (SIGTERM) and checks the same on disk.
#
# --failpoints: every other restart arms DUET_FAILPOINT (a test-only
# setting, server/src/failpoint.rs), so that the server also dies by itself
# at a consistency point (after point 1, 2 or 3, after the answer left,
# after point 4) or in a WRITE (after its data was written, before its
# point 3; or half way through writing it) on its N-th pass there; such a
# death counts as a kill.
#
# Ends with exactly one line on stdout:
#   kills K, requests R, lost L, duplicated D, client errors E
# and exits non-zero unless L, D and E are all 0. Everything else goes to
# stderr; the run's folder (server log, per-client logs and results) is
# kept when something went wrong, or always with --out.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kills=20 clients=8 policy=group seed=$RANDOM gap=0.3:2.0 term_every=5 durable=auto
journal_size=64M out="" extra=() journal=1 failpoints=0
while [ $# -gt 0 ]; do
  case $1 in
    --kills) kills=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --policy) policy=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --gap) gap=$2; shift 2 ;;
    --term-every) term_every=$2; shift 2 ;;
    --durable) durable=$2; shift 2 ;;
    --journal-size) journal_size=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-journal) journal=0; shift ;;
    --failpoints) failpoints=1; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "crash.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ -z "${DUET_BIN:-}" ] && [ -x "$repo/target/release/duet" ]; then
  DUET_BIN=$repo/target/release/duet
fi
bin=$(duet_bin)
keep=0
if [ -n "$out" ]; then keep=1; mkdir -p "$out"; dir=$(cd "$out" && pwd); else dir=$(mktemp -d /tmp/duet-crash.XXXXXX); fi
# A folder of an earlier run is emptied first: its share, journal and state
# would be restored into this one.
rm -rf "$dir/share" "$dir/clients" "$dir/nvram" "$dir/state" "$dir/duet.log"
mkdir -p "$dir/share" "$dir/clients"
port=$(free_port)
log "crash: dir $dir, port $port, seed $seed, $clients clients, $kills kills, policy $policy"

server_pid=""
server_errors=0
starts=0
# --failpoints: every other start (not the first) is armed to die by
# itself at a consistency point (DUET_FAILPOINT, server/src/failpoint.rs):
# the N-th pass of point1, point2, written, torn, point3, sent or point4.
armed=""
fp_names=(point1 point2 written torn point3 sent point4)
fp_deaths=0

start_server() {
  local before i
  before=$(grep -c "duet: listening" "$dir/duet.log" 2>/dev/null || true)
  local j=(--no-journal)
  [ "$journal" = 1 ] && j=(--journal "$dir/nvram" --journal-size "$journal_size" --journal-policy "$policy")
  armed=""
  if [ "$failpoints" = 1 ] && [ "$starts" -gt 0 ] && [ $((starts % 2)) -eq 1 ]; then
    armed="${fp_names[$(( (seed + starts) % ${#fp_names[@]} ))]}:$(( 50 + (seed * 31 + starts * 977) % 3000 ))"
    log "crash: start $((starts + 1)) armed with DUET_FAILPOINT=$armed"
  fi
  (cd "$dir" && DUET_FAILPOINT=$armed exec "$bin" serve --listen "127.0.0.1:$port" --share "crash=$dir/share" \
      --user "$DUET_USER:$DUET_PASS" --state-dir "$dir/state" "${j[@]}" \
      --log-level "${DUET_LOG_LEVEL:-info}" "${extra[@]}" </dev/null >>"$dir/duet.log" 2>&1) &
  server_pid=$!
  starts=$((starts + 1))
  for i in $(seq 600); do
    if [ "$(grep -c "duet: listening" "$dir/duet.log" 2>/dev/null || true)" -gt "${before:-0}" ]; then
      return 0
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
      log "crash: duet (start $starts) exited before listening; log tail:"
      tail -20 "$dir/duet.log" >&2
      return 1
    fi
    sleep 0.1
  done
  log "crash: duet (start $starts) did not listen within 60 s"
  return 1
}

# stop_server SIGNAL: signal duet and wait for it to exit (SIGTERM: 30 s,
# then SIGKILL).
stop_server() {
  local sig=$1 i
  if ! kill -0 "$server_pid" 2>/dev/null; then
    if [ -n "$armed" ] && grep -q "failpoint ${armed%%:*} reached" "$dir/duet.log"; then
      log "crash: duet died at its failpoint $armed"
      fp_deaths=$((fp_deaths + 1))
    else
      log "crash: duet (pid $server_pid) had died by itself"
      server_errors=$((server_errors + 1))
    fi
    wait "$server_pid" 2>/dev/null || true
    return
  fi
  kill "-$sig" "$server_pid" 2>/dev/null || true
  if [ "$sig" = TERM ]; then
    for i in $(seq 300); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$server_pid" 2>/dev/null; then
      log "crash: duet did not exit within 30 s of SIGTERM: SIGKILL"
      server_errors=$((server_errors + 1))
      kill -KILL "$server_pid" 2>/dev/null || true
    fi
  fi
  wait "$server_pid" 2>/dev/null || true
}

client_pids=()
cleanup() {
  local p
  for p in "${client_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null || true
}
trap cleanup EXIT

if ! start_server; then
  echo "kills 0, requests 0, lost 0, duplicated 0, client errors 1"
  exit 1
fi

for i in $(seq "$clients"); do
  python3 "$repo/testdata/crash_client.py" --port "$port" --share crash --id "$i" --seed "$seed" \
    --durable "$durable" --out "$dir/clients" --max-seconds 1800 \
    >"$dir/clients/out-$i.json" 2>"$dir/clients/log-$i.txt" &
  client_pids+=($!)
done

# The supervisor.
gap_min=${gap%:*} gap_max=${gap#*:}
done_kills=0
for k in $(seq "$kills"); do
  sleep "$(awk -v s="$seed" -v k="$k" -v a="$gap_min" -v b="$gap_max" 'BEGIN { srand(s * 7919 + k); printf "%.3f", a + rand() * (b - a) }')"
  if [ "$term_every" -gt 0 ] && [ $((k % term_every)) -eq 0 ]; then sig=TERM; else sig=KILL; fi
  stop_server "$sig"
  done_kills=$((done_kills + 1))
  log "crash: kill $k/$kills (SIG$sig)"
  if ! start_server; then
    server_errors=$((server_errors + 1))
    break
  fi
done

# Let the clients get going once more, then stop them; they check their
# files through the server.
sleep 2
touch "$dir/clients/stop"
for p in "${client_pids[@]}"; do
  for i in $(seq 3000); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$p" 2>/dev/null; then
    log "crash: client pid $p did not finish within 300 s of the stop"
    kill "$p" 2>/dev/null || true
  fi
  wait "$p" 2>/dev/null || true
done
client_pids=()
stop_server TERM

[ "$failpoints" = 1 ] && log "crash: $fp_deaths of the kills were failpoint deaths"
# The same checks on disk, with the server gone.
for i in $(seq "$clients"); do
  if [ -f "$dir/clients/model-$i.json" ]; then
    python3 "$repo/testdata/crash_client.py" --verify-disk "$dir/share" --model "$dir/clients/model-$i.json" \
      >"$dir/clients/disk-$i.json" 2>>"$dir/clients/log-$i.txt" || true
  fi
done

summary=$(python3 - "$dir/clients" "$clients" "$done_kills" "$server_errors" <<'EOF'
import json, os, sys
d, n, kills, server_errors = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
req = lost = dup = err = 0
for i in range(1, n + 1):
    try:
        c = json.load(open(os.path.join(d, f"client-{i}.json")))
    except (OSError, ValueError):
        print(f"crash: client {i} left no result", file=sys.stderr)
        err += 1
        continue
    try:
        disk = json.load(open(os.path.join(d, f"disk-{i}.json")))["lost_disk"]
    except (OSError, ValueError, KeyError):
        disk = 0
    req += c["requests"]
    lost += c["lost"] + max(c["lost_final"], disk)
    dup += c["duplicated"]
    err += c["errors"]
    print(f"crash: client {i} ({c['durable']}): {c['requests']} requests, {c['resent']} resent, "
          f"{c['reconnects']} reconnects, lost {c['lost']}+{c['lost_final']} (disk {disk}), "
          f"duplicated {c['duplicated']}, errors {c['errors']}", file=sys.stderr)
    for p in c["problems"][:5]:
        print(f"crash:   {p.splitlines()[0]}", file=sys.stderr)
err += server_errors
print(f"kills {kills}, requests {req}, lost {lost}, duplicated {dup}, client errors {err}")
EOF
)
trap - EXIT
cleanup
if [[ "$summary" =~ lost\ 0,\ duplicated\ 0,\ client\ errors\ 0$ ]]; then
  [ "$keep" = 1 ] || rm -rf "$dir"
  echo "$summary"
  exit 0
fi
log "crash: kept $dir (duet.log, clients/log-N.txt, clients/client-N.json)"
echo "$summary"
exit 1
