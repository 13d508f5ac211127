#!/usr/bin/env bash
# bench-ca.sh [--connections N] [--rounds R] [--time S] [--policies "group process"] [--out DIR]
#
# Open+close rate with persistent handles on a continuously available share
# against a plain share (issue 13: at least 0.9 of it).
#
# For each journal policy (default: group, then process) one duet
# ($DUET_BIN, else target/release/duet, else a fresh release build) serves
# two shares, `plain` and `ca` (`--ca ca`), with a journal. The example
# `bench_client open-close` (server/examples/bench_client.rs, built here in
# release) opens and closes a file (OPEN_IF, read-write, no oplock) as fast
# as it can on N connections at once (default 4; one request at a time on
# each, each connection its own file), for S seconds (default 5), in three
# modes, one after the other in every round, the order turning each round:
#
#   plain       on `plain`, no create context;
#   persistent  on `ca`, DH2Q with SMB2_DHANDLE_FLAG_PERSISTENT (every open
#               must be granted a persistent handle, or the run fails);
#   ca-plain    on `ca`, no create context (what the share itself costs).
#
# Medians of R rounds (default 5), the ratio persistent / plain, and the CPU
# each side used (client: getrusage; server: /proc/PID/stat), so that a
# client-bound run shows as one (this machine has 2 cores). One open+close
# counts as one operation.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

conns=4 rounds=5 secs=5 policies="group process" out=""
while [ $# -gt 0 ]; do
  case $1 in
    --connections) conns=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --time) secs=$2; shift 2 ;;
    --policies) policies=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "bench-ca.sh: unknown argument $1" >&2; exit 2 ;;
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
keep=1
if [ -z "$out" ]; then out=$(mktemp -d /tmp/duet-bench-ca.XXXXXX); keep=0; fi
mkdir -p "$out"; out=$(cd "$out" && pwd)

pid=""
cleanup() {
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  [ "$keep" = 0 ] && rm -rf "$out"
  return 0
}
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
modes=(plain persistent ca-plain)
: >"$out/runs.tsv"
echo "### bench-ca.sh: $conns connections, $secs s per run, $rounds rounds, $(date -u +%F), commit $(cd "$repo" && git rev-parse --short HEAD)"
for policy in $policies; do
  d=$out/$policy
  rm -rf "$d"; mkdir -p "$d/plain" "$d/ca"
  port=$(free_port)
  (cd "$d" && exec "$bin" serve --listen "127.0.0.1:$port" --share "plain=$d/plain" --share "ca=$d/ca" --ca ca \
     --user "$DUET_USER:$DUET_PASS" --state-dir "$d/state" --journal "$d/nvram" --journal-policy "$policy" \
     --log-level warn </dev/null >"$d/duet.log" 2>&1) &
  pid=$!
  for _ in $(seq 300); do grep -q "duet: listening" "$d/duet.log" 2>/dev/null && break; sleep 0.1; done
  grep -q "duet: listening" "$d/duet.log" || { tail "$d/duet.log" >&2; exit 1; }
  # Warm-up, uncounted.
  for m in "${modes[@]}"; do
    "$client" open-close --port "$port" --share "$([ "$m" = plain ] && echo plain || echo ca)" --connections "$conns" \
      --seconds 1 $([ "$m" = persistent ] && echo --persistent) >/dev/null
  done
  for r in $(seq "$rounds"); do
    order=("${modes[@]}")
    [ $((r % 2)) = 0 ] && order=(ca-plain persistent plain)
    for m in "${order[@]}"; do
      share=ca; [ "$m" = plain ] && share=plain
      t0=$(cpu_ticks "$pid")
      res=$("$client" open-close --port "$port" --share "$share" --connections "$conns" --seconds "$secs" \
              $([ "$m" = persistent ] && echo --persistent))
      t1=$(cpu_ticks "$pid")
      printf '%s\t%s\t%s\t%s\t%s\n' "$policy" "$m" "$r" "$res" "$(( t1 - t0 ))" >>"$out/runs.tsv"
    done
  done
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""
done

python3 - "$out/runs.tsv" "$hz" "$secs" <<'PY'
import json, statistics, sys
path, hz, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rows = {}
for line in open(path):
    policy, mode, r, res, ticks = line.rstrip("\n").split("\t")
    j = json.loads(res)
    rows.setdefault((policy, mode), []).append((j["ops_per_s"], j["client_cpu_s"] / j["seconds"], int(ticks) / hz / j["seconds"]))
policies = list(dict.fromkeys(p for p, _ in rows))
print()
print("| policy | plain ops/s | persistent (CA) ops/s | persistent / plain | CA share, no DH2Q ops/s | target | met |")
print("|---|---:|---:|---:|---:|---|---|")
for p in policies:
    med = {m: statistics.median(x[0] for x in rows[(p, m)]) for m in ("plain", "persistent", "ca-plain")}
    ratio = med["persistent"] / med["plain"]
    print(f"| `{p}` | {med['plain']:.0f} | {med['persistent']:.0f} | {ratio:.2f} | {med['ca-plain']:.0f} | ≥ 0.9 | {'yes' if ratio >= 0.9 else 'no'} |")
print()
print("CPU per second of run (cores; this machine has 2), medians:")
for p in policies:
    for m in ("plain", "persistent", "ca-plain"):
        xs = rows[(p, m)]
        print(f"  {p:8} {m:10} client {statistics.median(x[1] for x in xs):.2f}, server {statistics.median(x[2] for x in xs):.2f}")
print()
print("The runs, ops/s:")
for p in policies:
    for m in ("plain", "persistent", "ca-plain"):
        print(f"  {p:8} {m:10}: " + " ".join(f"{x[0]:.0f}" for x in rows[(p, m)]))
PY
