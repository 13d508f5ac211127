#!/usr/bin/env bash
# bench.sh [--quick] [--size MIB] [--rounds R] [--clients N] [--modes LIST]
#          [--kinds LIST] [--time S] [--nprocs N] [--no-torture] [--torture-rounds N]
#          [--out DIR] [--stall-rounds N] [--stall-lab]
#          [--baseline BIN | --mirror [--partner-policy POLICY]]
#
# Benchmarks duet and Samba's smbd side by side, in one run, with the same
# client, the same files and the same options, each on its own loopback port
# and temp share (user duet:duetpass):
#
#   put MB/s, MODE           smbclient put of a SIZE MiB file (default 1024),
#                            generated once from /dev/urandom into a temp dir
#   get MB/s, MODE           smbclient get of that file back (to /dev/null),
#                            right after its put
#   N clients put/get MB/s   N smbclients at once (default 4), each putting
#                            the file under its own name, then each getting
#                            its own back: N x SIZE over the wall time from
#                            the first start to the last finish
#                            (after an uncounted warm-up put and N-client
#                            put on each server, see below)
#                            Each of these in every MODE of --modes (default
#                            plain,signed,encrypted: smbclient
#                            --client-protection=off|sign|encrypt; smbclient
#                            4.17 signs with AES-128-GMAC and encrypts with
#                            AES-128-GCM against both servers). The median of
#                            R rounds (default 5); the servers alternate
#                            transfer by transfer, and which goes first
#                            alternates by round.
#   server CPU s/GiB, MODE DIR
#                            the server's CPU time (user + system, from
#                            /proc/PID/stat: every thread, every process of
#                            its tree, and the children it has reaped, which
#                            is where smbd's per-client processes end up)
#                            over every put (or get) of that mode, single and
#                            N clients, per GiB moved
#   path-contention ops/s    smbtorture smb2.bench.path-contention-shared,
#                            NPROCS connections (default 4) for S seconds
#                            (default 10): opens + closes per second, averaged
#   echo ops/s               smbtorture smb2.bench.echo, same NPROCS and S
#   peak RSS MiB             the server's peak resident memory: the largest sum
#                            of VmRSS over its whole process tree (smbd forks one
#                            process per client) sampled every 0.2 s, or the
#                            main process's VmHWM if larger
#   peak PSS MiB             the same with PSS (smaps_rollup), which does not
#                            count pages shared between smbd's processes twice;
#                            below the table, the peak while each transfer ran
#                            (a server that keeps its heap shows the high-water
#                            mark of the transfers before, too)
#
# --out DIR keeps the logs and tables there (the transferred files and the
# journals are deleted at the end). --quick: 128 MiB, 2 rounds, 3 s smbtorture benches (for development; the
# numbers are noisier). --no-torture skips the smbtorture rows.
# MB = 10^6 bytes, GiB = 2^30 bytes. Prints a Markdown table with columns
# duet, smbd and duet/smbd, and each transfer's runs below it.
#
# DUET_BIN selects duet (default: build target/release/duet). With
# BENCH_DUET=smbd (or DUET_TEST_SERVER=smbd) a second smbd stands in for duet,
# to check this script. Needs: smbclient, smbtorture, smbd, python3.
#
# BENCH_REF_DUET=/path/to/old/duet (or --baseline BIN) puts a second duet
# binary in smbd's place: duet (DUET_BIN) against that baseline, with the
# same alternation, rows and options; the columns read duet, baseline and
# duet/baseline. For a before/after check of a change, e.g.
#   git worktree add --detach ../base OLD && (cd ../base &&
#     cargo build --release -p server --bin duet)
#   BENCH_REF_DUET=../base/target/release/duet scripts/bench.sh --rounds 7
# BENCH_DUET_ARGS and BENCH_REF_ARGS add `duet serve` arguments to the duet
# under test and to the baseline duet (the same binary may be both: the
# journal policies against no journal, scripts/bench-journal.sh).
#
# --mirror: the mirror's cost (issue 14). The duet under test is node A of a
# pair on loopback (--pair-* flags, each node its own folder, journal and
# interconnect port, as server/tests/common/pair.rs starts them) whose
# partner, node B, is up and mirroring A's journal; the reference is the
# same binary alone with its journal. Both with the default journal policy
# (group) plus BENCH_DUET_ARGS; the partner's journal under --partner-policy
# (default group; process: the mirror ring is not msynced on B). The
# measuring starts once A's mirror at B is current, and the table's last
# rows say whether it stayed so (resyncs, degraded). Columns: mirror on,
# mirror off, on/off. The CPU rows count node A only (B's CPU is below the
# table). The client talks to node A's port. An extra row times one durable
# answer: 4 KiB WRITEs one at a time through a durable v2 open
# (testdata/failover_client.py), mean ms each over 300, whose difference is
# what the mirror adds to each (the round trip to B and B's sync).
#
# --kinds LIST: which transfers run (default put,get,nput,nget), and
# `stall`: the client-visible stall per kind of move (issue 14). It runs
# scripts/failover.sh with --stall-rounds N (default 20; --quick 3) kills, N
# freezes and N elective rounds (each an elective takeover and a giveback;
# with --stall-lab each round in a fresh `duet lab`, root) and prints a table
# of p50, p99 and max per kind (elective takeover, giveback, kill, freeze),
# each from the client's last answer before the move to its first after it,
# against the targets: elective and giveback p99 < 300 ms, kill and freeze
# p99 < the detection timeout (2 s) + 1 s; then failover.sh's line (lost,
# duplicated, client errors: all must be 0, else the exit status is 1).
# `--kinds stall` alone runs only that (no smbd, no transfers, no smbtorture).
# --torture-rounds N: each smbtorture bench N times per server, alternating,
# the median counts (default 1; with --mirror, --rounds).
# BENCH_LIMIT_CMD: a command (run with bash) that prints a medium's limit in
# MB/s; run after each round's puts, it gives a limit per round, and below
# the runs duet's put over the limit of its own round, with the median
# (scripts/bench-journal.sh: the disk's sync latency drifts within minutes).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

size_mib=1024; secs=10; nprocs=4; rounds=5; clients=4; out=""; torture=1
modes=plain,signed,encrypted
kinds=put,get,nput,nget; mirror=0; partner_policy=group; torture_rounds=""
stall_rounds=20; stall_lab=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) size_mib=128; rounds=2; secs=3; stall_rounds=3; shift ;;
    --size) size_mib=$2; shift 2 ;;
    --time) secs=$2; shift 2 ;;
    --nprocs) nprocs=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --no-torture) torture=0; shift ;;
    --out) out=$2; shift 2 ;;
    --baseline) BENCH_REF_DUET=$2; shift 2 ;;
    --mirror) mirror=1; shift ;;
    --partner-policy) partner_policy=$2; shift 2 ;;
    --kinds) kinds=$2; shift 2 ;;
    --torture-rounds) torture_rounds=$2; shift 2 ;;
    --stall-rounds) stall_rounds=$2; shift 2 ;;
    --stall-lab) stall_lab=1; shift ;;
    -h|--help) sed -n '2,102p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
IFS=, read -r -a mode_list <<<"$modes"
for m in "${mode_list[@]}"; do
  case "$m" in plain|signed|encrypted) ;; *) echo "bench.sh: unknown mode $m" >&2; exit 2 ;; esac
done
[ -z "$torture_rounds" ] && { if [ $mirror = 1 ]; then torture_rounds=$rounds; else torture_rounds=1; fi; }
# `stall` is not a transfer: taken out of the list, run on its own (below).
stall=0
case ",$kinds," in *,stall,*) stall=1; kinds=$(echo ",$kinds," | sed 's/,stall,/,/g; s/^,//; s/,$//') ;; esac
IFS=, read -r -a kind_list <<<"$kinds"
for k in ${kind_list[@]+"${kind_list[@]}"}; do
  case "$k" in put|get|nput|nget) ;; *) echo "bench.sh: unknown kind $k" >&2; exit 2 ;; esac
done
# A get reads the file its put wrote: no get without its put.
case ",$kinds," in *,get,*) [[ ",$kinds," == *,put,* ]] || { echo "bench.sh: get needs put" >&2; exit 2; } ;; esac
case ",$kinds," in *,nget,*) [[ ",$kinds," == *,nput,* ]] || { echo "bench.sh: nget needs nput" >&2; exit 2; } ;; esac
[ "${BENCH_DUET:-}" = smbd ] && export DUET_TEST_SERVER=smbd
for tool in smbclient smbtorture smbd python3; do
  command -v "$tool" >/dev/null || { echo "bench.sh: $tool missing (run scripts/install-deps.sh)" >&2; exit 2; }
done
# The reference server: smbd, or with BENCH_REF_DUET a baseline duet. Its
# name keys everything below (logs, $out/NAME, the table's columns).
ref=smbd
if [ $mirror = 1 ]; then
  [ -n "${BENCH_REF_DUET:-}" ] && { echo "bench.sh: --mirror and a baseline duet do not go together" >&2; exit 2; }
  [ "${DUET_TEST_SERVER:-duet}" = smbd ] && { echo "bench.sh: --mirror needs duet" >&2; exit 2; }
  ref=lone
  DUET_BIN=$(duet_bin)
  DUET_BIN=$(cd "$(dirname "$DUET_BIN")" && pwd)/$(basename "$DUET_BIN")
  export DUET_BIN
elif [ -n "${BENCH_REF_DUET:-}" ]; then
  ref=baseline
  [ -x "$BENCH_REF_DUET" ] || { echo "bench.sh: baseline $BENCH_REF_DUET is not an executable" >&2; exit 2; }
  [ "${DUET_TEST_SERVER:-duet}" = smbd ] && { echo "bench.sh: BENCH_DUET=smbd and a baseline duet do not go together" >&2; exit 2; }
  BENCH_REF_DUET=$(cd "$(dirname "$BENCH_REF_DUET")" && pwd)/$(basename "$BENCH_REF_DUET")
  # Resolve (or build) the duet under test now, to name it above the table.
  DUET_BIN=$(duet_bin)
  DUET_BIN=$(cd "$(dirname "$DUET_BIN")" && pwd)/$(basename "$DUET_BIN")
  export DUET_BIN
fi
REF=${ref^^}

# --kinds stall: the client-visible stall per kind of move, from
# scripts/failover.sh's stalls (`KIND MS` lines), as a Markdown table with
# the issue's targets. Sets stall_status (failover.sh's exit status).
DETECT_MS=2000 # the pair's detection timeout (pair::sets::DETECT)
stall_status=0
stall_table() {
  local f=$out/stalls.txt line args=(--kills "$stall_rounds" --freezes "$stall_rounds" --elective "$stall_rounds")
  [ $stall_lab = 1 ] && args+=(--lab)
  log "stall: scripts/failover.sh ${args[*]} (its log: $out/failover.log)"
  line=$(bash "$repo/scripts/failover.sh" "${args[@]}" --stalls "$f" 2>"$out/failover.log") || stall_status=$?
  echo
  echo "## Client-visible stall per kind: scripts/failover.sh ${args[*]}"
  echo
  echo "From the client's last answer before the move to its first after it (testdata/failover_client.py: durable v2 appends)."
  echo
  python3 - "$f" "$DETECT_MS" <<'PY'
import sys
path, detect = sys.argv[1], int(sys.argv[2])
got = {}
try:
    for line in open(path):
        k, v = line.split()
        got.setdefault(k, []).append(int(v))
except OSError:
    pass
print("| kind | p50 ms | p99 ms | max ms | rounds | target (issue 14) | met |")
print("|---|---:|---:|---:|---:|---|---|")
for key, name, limit, why in [
    ("elective", "elective takeover", 300, "p99 < 300 ms"),
    ("giveback", "giveback", 300, "p99 < 300 ms"),
    ("kill", "kill (SIGKILL of the serving node)", detect + 1000, f"p99 < detection ({detect} ms) + 1 s"),
    ("freeze", "freeze (SIGSTOP of the serving node)", detect + 1000, f"p99 < detection ({detect} ms) + 1 s"),
]:
    v = sorted(got.get(key, []))
    if not v:
        print(f"| {name} | - | - | - | 0 | {why} | - |")
        continue
    p = lambda q: v[min(len(v) - 1, int(q * len(v)))]
    met = "yes" if p(0.99) < limit else "no"
    print(f"| {name} | {p(0.5)} | {p(0.99)} | {v[-1]} | {len(v)} | {why} | {met} |")
PY
  echo
  echo "Beside: CTDB takes about 30 s by default to declare a hung node dead; Windows Continuous Availability, seconds (up to 25 s worst case)."
  echo
  echo "failover.sh: ${line:-(no summary line: see $out/failover.log)}"
}
# Width of the server names in the run listings below the table.
w=$(( ${#ref} > 4 ? ${#ref} : 4 ))

keep=1
if [ -z "$out" ]; then out=$(mktemp -d /tmp/duet-bench.XXXXXX); keep=0; fi
mkdir -p "$out"; out=$(cd "$out" && pwd); chmod 755 "$out"
# `--kinds stall` alone: no servers of our own, no transfers.
if [ $stall = 1 ] && [ ${#kind_list[@]} = 0 ]; then
  [ $keep = 1 ] || trap 'rm -rf "$out"' EXIT
  DUET_BIN=$(duet_bin); DUET_BIN=$(cd "$(dirname "$DUET_BIN")" && pwd)/$(basename "$DUET_BIN"); export DUET_BIN
  stall_table
  [ $keep = 1 ] && echo && echo "logs in $out"
  exit $((stall_status == 0 ? 0 : 1))
fi
samplers=()
cleanup() {
  local p
  for p in ${samplers[@]+"${samplers[@]}"}; do kill "$p" 2>/dev/null || true; done
  stop_all
  if [ $keep = 0 ]; then
    rm -rf "$out"
  else
    # The logs and tables stay; the transferred files and the journals (GBs
    # over several runs: they once filled the disk) go.
    rm -f "$out/client/big.bin" "$out"/*/share/*.bin "$out"/*/duet-data/nvram
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$out/duet" "$out/$ref" "$out/partner"
# BENCH_DUET_ARGS, BENCH_REF_ARGS: extra `duet serve` arguments for the duet
# under test and for a baseline duet (e.g. journal policies, see
# scripts/bench-journal.sh).
read -r -a duet_args <<<"${BENCH_DUET_ARGS:-}"
read -r -a ref_args <<<"${BENCH_REF_ARGS:-}"
# --mirror: `duet status --json` of a node started in DIR (its admin socket
# in duet-data/), the `pair` object's field PATH (dot-separated), or "-".
pair_field() { # DIR PATH
  "$DUET_BIN" status --json --socket "$1/duet-data/admin.sock" 2>/dev/null | python3 -c '
import json, sys
try:
    v = json.load(sys.stdin)["pair"]
    for k in sys.argv[1].split("."):
        v = v[k]
    print(str(v).lower() if isinstance(v, bool) else v)
except Exception:
    print("-")' "$2"
}
if [ $mirror = 1 ]; then
  ic_a=$(free_port); ic_b=$(free_port)
  # The interconnect key both nodes prove themselves with (32 random bytes, 0600).
  (umask 077 && head -c 32 /dev/urandom > "$out/interconnect.key")
  pair_args() { # ID PARTNER-ID OWN-PORT PARTNER-PORT
    echo --pair-cluster 7 --pair-node "$1" --pair-partner-node "$2" --pair-incarnation 1 \
      --pair-listen "127.0.0.1:$3" --pair-partner "127.0.0.1:$4" --pair-key "$out/interconnect.key"
  }
  # B first: it waits (3 s at most) for A's join, then serves; A joins it at once.
  # shellcheck disable=SC2046
  start_duet PARTNER "$out/partner" --journal-policy "$partner_policy" $(pair_args 2 1 "$ic_b" "$ic_a")
  # shellcheck disable=SC2046
  start_duet DUET "$out/duet" ${duet_args[@]+"${duet_args[@]}"} $(pair_args 1 2 "$ic_a" "$ic_b")
  for i in $(seq 300); do
    [ "$(pair_field "$out/duet" mirror.state)" = current ] && [ "$(pair_field "$out/duet" degraded)" = false ] && break
    [ "$i" = 300 ] && { log "node A's mirror at B never became current"; exit 1; }
    sleep 0.1
  done
  log "pair up: node A's mirror at B current (partner policy $partner_policy)"
  ref_args=(${duet_args[@]+"${duet_args[@]}"})
else
  start_duet DUET "$out/duet" ${duet_args[@]+"${duet_args[@]}"}
fi
if [ "$ref" = lone ]; then
  start_duet LONE "$out/lone" ${ref_args[@]+"${ref_args[@]}"}
elif [ "$ref" = smbd ]; then
  start_smbd SMBD "$out/smbd"
else
  DUET_BIN=$BENCH_REF_DUET start_duet "$REF" "$out/$ref" ${ref_args[@]+"${ref_args[@]}"}
fi

# The process tree of a pid, from /proc/PID/task/TID/children (cheap: no
# scan of all of /proc). Shared by the memory sampler and the CPU meter.
cat >"$out/proctree.py" <<'PY'
import os
def tree(root):
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out
PY

# Peak memory sampler: NAME PID -> writes "PHASE max_rss_kib max_pss_kib"
# lines to $out/NAME.rss, one for each phase named in $out/phase while it
# ran (e.g. signed.nget) and one for "all".
sample_rss() {
  python3 - "$2" "$out/$1.rss" "$out" <<'PY' &
import os, sys, time
root, path = int(sys.argv[1]), sys.argv[2]
sys.path.insert(0, sys.argv[3])
from proctree import tree
def field(pid, name, fname="status"):
    try:
        with open(f"/proc/{pid}/{fname}") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0
peaks = {"all": (0, 0)}
while os.path.exists(f"/proc/{root}"):
    try:
        with open(os.path.join(sys.argv[3], "phase")) as f:
            phase = f.read().strip() or "idle"
    except OSError:
        phase = "idle"
    procs = tree(root)
    rss = max(sum(field(p, "VmRSS") for p in procs), field(root, "VmHWM"))
    pss = sum(field(p, "Pss", "smaps_rollup") for p in procs)
    for k in ("all", phase):
        r, p = peaks.get(k, (0, 0))
        peaks[k] = (max(r, rss), max(p, pss))
    with open(path + ".tmp", "w") as f:
        for k, (r, p) in peaks.items():
            f.write(f"{k} {r} {p}\n")
    os.replace(path + ".tmp", path)
    time.sleep(0.2)
PY
  samplers+=($!)
}
sample_rss duet "$DUET_PID"
ref_pid_var=${REF}_PID
sample_rss "$ref" "${!ref_pid_var}"

# CPU seconds used so far by PID's process tree, and its size: utime +
# stime of every live process (all threads) plus cutime + cstime, the
# children each has reaped. With a second argument N, first waits (up to
# 5 s) until the tree has at most N processes again, so that smbd's
# per-client processes have exited and been reaped, their time now in
# smbd's cutime + cstime.
tree_cpu() { # PID [N]
  python3 - "$out" "$@" <<'PY'
import os, sys, time
sys.path.insert(0, sys.argv[1])
from proctree import tree
root = int(sys.argv[2])
if len(sys.argv) > 3:
    for _ in range(100):
        if len(tree(root)) <= int(sys.argv[3]):
            break
        time.sleep(0.05)
total = 0
procs = tree(root)
for p in procs:
    try:
        with open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
print(f"{total / os.sysconf('SC_CLK_TCK'):.2f} {len(procs)}")
PY
}

bytes=$((size_mib * 1024 * 1024))
log "generating a $size_mib MiB test file"
mkdir -p "$out/client"
head -c "$bytes" /dev/urandom > "$out/client/big.bin"

protection() { case "$1" in plain) echo off ;; signed) echo sign ;; encrypted) echo encrypt ;; esac; }
smbc() { # PORT MODE CMDS
  smbclient //127.0.0.1/share -p "$1" -U "$DUET_USER%$DUET_PASS" -m SMB3 \
    --client-protection="$(protection "$2")" -c "$3" </dev/null
}
declare -A R

# Runs smbclient COUNT times at once ("#" in CMDS becomes 1..COUNT), in
# $out/client; -> wall seconds on stdout, or "fail". Output in $out/last.I.log.
timed() { # COUNT PORT MODE CMDS
  local count=$1 port=$2 mode=$3 cmds=$4 t0 t1 i pids=() bad=0
  t0=$(date +%s.%N)
  for i in $(seq 1 "$count"); do
    (cd "$out/client" && smbc "$port" "$mode" "${cmds//#/$i}") >"$out/last.$i.log" 2>&1 &
    pids+=($!)
  done
  for i in $(seq 1 "$count"); do
    wait "${pids[$((i - 1))]}" || bad=1
  done
  t1=$(date +%s.%N)
  for i in $(seq 1 "$count"); do
    if grep -q NT_STATUS_ "$out/last.$i.log"; then bad=1; fi
  done
  if [ $bad = 1 ]; then
    log "failed: $cmds"
    for i in $(seq 1 "$count"); do cat "$out/last.$i.log" >&2; done
    echo fail; return
  fi
  echo "$t0 $t1" | awk '{printf "%.3f", $2 - $1}'
}
mbps() { # SECONDS BYTES -> MB/s
  [ "$1" = fail ] && { echo "-"; return; }
  awk -v b="$2" -v s="$1" 'BEGIN { printf "%.1f", b / 1e6 / s }'
}

median() { # VALUES... -> the middle one ("-" if any run failed)
  printf '%s\n' "$@" | python3 -c '
import sys
v = sys.stdin.read().split()
if not v or "-" in v:
    print("-")
else:
    v = sorted(float(x) for x in v)
    print(v[len(v) // 2])'
}

# Each server's process count at rest, to wait for after a transfer.
declare -A RUNS CPU MOVED BASE LIMITS
for name in duet "$ref"; do
  pid_var=${name^^}_PID
  read -r _ "BASE[$name]" < <(tree_cpu "${!pid_var}")
done
[ $mirror = 1 ] && read -r partner_cpu0 _ < <(tree_cpu "$PARTNER_PID")

# One transfer on one server: KIND (put|get|nput|nget) MODE NAME [warmup].
transfer() {
  local kind=$1 mode=$2 name=$3 warmup=${4:-} port_var=${3^^}_PORT pid_var=${3^^}_PID
  local port=${!port_var} pid=${!pid_var} count=1 cmds n t r c0 c1 i f got dir=${1#n}
  case "$kind" in
    put) rm -f "$out/$name/share/big.bin"; cmds="put big.bin big.bin" ;;
    get) cmds="get big.bin /dev/null" ;;
    nput) count=$clients; rm -f "$out/$name/share"/c*.bin; cmds="put big.bin c#.bin" ;;
    nget) count=$clients; cmds="get c#.bin /dev/null" ;;
  esac
  # Start each transfer with no dirty pages left over from the last one:
  # otherwise the kernel's writeback throttling, not the server, sets the
  # pace, and it falls on whichever server comes next.
  sync
  read -r c0 _ < <(tree_cpu "$pid" "${BASE[$name]}")
  echo "$mode.$kind" >"$out/phase"
  t=$(timed "$count" "$port" "$mode" "$cmds")
  echo idle >"$out/phase"
  read -r c1 _ < <(tree_cpu "$pid" "${BASE[$name]}")
  n=$((count * bytes))
  r=$(mbps "$t" "$n")
  if [ "$dir" = put ] && [ "$r" != "-" ]; then
    for i in $(seq 1 "$count"); do
      if [ "$kind" = put ]; then f=big.bin; else f=c$i.bin; fi
      got=$(stat -c %s "$out/$name/share/$f" 2>/dev/null || echo 0)
      if [ "$got" != "$bytes" ]; then log "$name: server-side $f has $got bytes, expected $bytes"; r="-"; fi
    done
  fi
  log "$name: $kind $mode: ${t}s, $r MB/s, server CPU $(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')s${warmup:+ (warm-up, not counted)}"
  [ -n "$warmup" ] && return
  RUNS[$name.$mode.$kind]="${RUNS[$name.$mode.$kind]:-} $r"
  CPU[$name.$mode.$dir]=$(awk -v s="${CPU[$name.$mode.$dir]:-0}" -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", s + b - a }')
  MOVED[$name.$mode.$dir]=$(( ${MOVED[$name.$mode.$dir]:-0} + n ))
}

# A warm-up put and N-client put on each server, not counted. This machine
# is a virtual one whose memory the host backs on first touch: the first
# gigabytes of page cache a run writes cost the writer several times the
# CPU of pages used before (dd of 512 MiB: 1.3 s of system time into
# fresh memory, 0.15 s into reused), and without a warm-up that falls on
# the first transfers of whichever server goes first. Each later transfer
# deletes the files of the one before it, so it writes into reused pages.
for name in duet "$ref"; do
  [[ ",$kinds," == *,put,* ]] && transfer put plain "$name" warmup
  [[ ",$kinds," == *,nput,* ]] && transfer nput plain "$name" warmup
done

# The servers alternate transfer by transfer, ROUNDS times, and the median
# counts: on a shared machine one transfer can land in a noisy second, and
# alternating spreads the noise over both servers alike.
for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) = 1 ]; then order="duet $ref"; else order="$ref duet"; fi
  for mode in "${mode_list[@]}"; do
    log "round $round/$rounds, $mode"
    for kind in "${kind_list[@]}"; do
      for name in $order; do transfer "$kind" "$mode" "$name"; done
      if [ "$kind" = put ] && [ -n "${BENCH_LIMIT_CMD:-}" ]; then
        lim=$(sync; bash -c "$BENCH_LIMIT_CMD" || echo -)
        log "round $round: medium limit $lim MB/s"
        LIMITS[$mode]="${LIMITS[$mode]:-} $lim"
      fi
    done
  done
done
for name in duet "$ref"; do
  for mode in "${mode_list[@]}"; do
    for kind in put get nput nget; do
      # shellcheck disable=SC2086
      R[$name.$mode.$kind]=$(median ${RUNS[$name.$mode.$kind]:-})
    done
    for dir in put get; do
      R[$name.$mode.cpu$dir]=$(awk -v c="${CPU[$name.$mode.$dir]:-0}" -v b="${MOVED[$name.$mode.$dir]:-0}" \
        'BEGIN { if (b == 0) print "-"; else printf "%.2f", c / (b / 1073741824) }')
    done
  done
done

# smbtorture bench: SUITE PORT -> average ops/s over the reported seconds.
torture_bench() {
  local suite=$1 port=$2 name=$3
  smbtorture //127.0.0.1/share -p "$port" -U "$DUET_USER%$DUET_PASS" \
    --option=torture:nprocs="$nprocs" --option=torture:timelimit="$secs" \
    "$suite" </dev/null >"$out/$name.$suite.log" 2>&1 & wait $! || true
  python3 - "$out/$name.$suite.log" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
if "success:" not in text:
    print("-"); sys.exit()
# Per-second reports look like `2.00 second: open[num/s=1107,...] close[num/s=1108,...]`.
per_sec = []
for rep in re.split(r"\d+\.\d+ seconds?:", text)[1:]:
    rates = [int(x) for x in re.findall(r"\w+\[num/s=(\d+)", rep)]
    if rates:
        per_sec.append(sum(rates))
print(round(sum(per_sec) / len(per_sec)) if per_sec else "-")
PY
}
suites=()
[ $torture = 1 ] && suites=(smb2.bench.path-contention-shared smb2.bench.echo)
# Each suite TORTURE_ROUNDS times per server (default 1; with --mirror as
# many as --rounds), alternating which goes first, and the median counts.
for suite in ${suites[@]+"${suites[@]}"}; do
  for round in $(seq 1 "$torture_rounds"); do
    if [ $((round % 2)) = 1 ]; then order="duet $ref"; else order="$ref duet"; fi
    for name in $order; do
      port_var=${name^^}_PORT
      log "$name: $suite, $nprocs connections, ${secs}s (round $round/$torture_rounds)"
      v=$(torture_bench "$suite" "${!port_var}" "$name")
      RUNS[$name.$suite]="${RUNS[$name.$suite]:-} $v"
      log "$name: $suite: $v ops/s"
    done
  done
  for name in duet "$ref"; do
    # shellcheck disable=SC2086
    R[$name.$suite]=$(median ${RUNS[$name.$suite]})
    R[$name.$suite]=${R[$name.$suite]%.0}
  done
done

# --mirror: the time one durable answer takes, 4 KiB WRITEs one at a time
# through a durable v2 open (testdata/failover_client.py, smbprotocol), each
# answered only once its record is durable: on node A that includes the
# round trip to B and B's sync of its mirror ring. Mean ms per WRITE over
# 300 WRITEs, TORTURE_ROUNDS times per server alternating; the median counts.
write_ms() { # PORT NAME
  python3 "$repo/testdata/failover_client.py" --host 127.0.0.1 --port "$1" --share share \
    --user "$DUET_USER" --password "$DUET_PASS" --name "lat.$2.dat" --blocks 300 --size 4096 \
    >"$out/$2.writes.log" 2>&1 </dev/null || { echo "-"; return; }
  python3 - "$out/$2.writes.log" <<'PY'
import json, sys
ts = []
for line in open(sys.argv[1]):
    try:
        d = json.loads(line)
    except ValueError:
        continue
    if "wrote" in d:
        ts.append(d["t"])
print(f"{(ts[-1] - ts[0]) * 1000 / (len(ts) - 1):.3f}" if len(ts) > 1 else "-")
PY
}
if [ "$ref" = lone ]; then
  for round in $(seq 1 "$torture_rounds"); do
    if [ $((round % 2)) = 1 ]; then order="duet $ref"; else order="$ref duet"; fi
    for name in $order; do
      port_var=${name^^}_PORT
      v=$(write_ms "${!port_var}" "$name")
      RUNS[$name.writems]="${RUNS[$name.writems]:-} $v"
      log "$name: 4 KiB durable WRITE one at a time: $v ms (round $round/$torture_rounds)"
    done
  done
  for name in duet "$ref"; do
    # shellcheck disable=SC2086
    R[$name.writems]=$(median ${RUNS[$name.writems]})
  done
fi

sleep 0.5
mib() { awk -v k="${1:-0}" 'BEGIN { if (k > 0) printf "%.1f", k / 1024; else print "-" }'; }
for name in duet "$ref"; do
  while read -r phase kib pss_kib; do
    R[$name.rss.$phase]=$(mib "$kib")
    R[$name.pss.$phase]=$(mib "$pss_kib")
  done < "$out/$name.rss"
  R[$name.rss]=${R[$name.rss.all]:--}
  R[$name.pss]=${R[$name.pss.all]:--}
done

ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'
}
label_duet=duet; [ "${DUET_TEST_SERVER:-duet}" = smbd ] && label_duet="duet (smbd stand-in)"
label_ref=$ref ratio_label=duet/$ref
echo
if [ "$ref" = lone ]; then
  label_duet="mirror on" label_ref="mirror off" ratio_label=on/off
  echo "## Mirror on vs off: $size_mib MiB file, $clients clients, $rounds rounds; smbtorture: $nprocs connections, ${secs}s, $torture_rounds rounds"
  echo
  echo "- duet: $DUET_BIN ($(cd "$repo" && git log -1 --format='%h %cd' --date=format:%Y-%m-%d 2>/dev/null || echo '?'))"
  echo "- mirror on: node A of a pair, journal policy group${BENCH_DUET_ARGS:+, $BENCH_DUET_ARGS}; its partner B under $partner_policy"
  echo "- mirror off: the same binary alone, journal policy group${BENCH_DUET_ARGS:+, $BENCH_DUET_ARGS}"
elif [ "$ref" = smbd ]; then
  echo "## Duet vs smbd: $size_mib MiB file, $clients clients, $rounds rounds; smbtorture: $nprocs connections, ${secs}s"
else
  echo "## Duet vs baseline duet: $size_mib MiB file, $clients clients, $rounds rounds; smbtorture: $nprocs connections, ${secs}s"
  echo
  echo "- duet: $DUET_BIN"
  echo "- baseline: $BENCH_REF_DUET"
fi
echo
echo "| metric | $label_duet | $label_ref | $ratio_label |"
echo "|---|---:|---:|---:|"
row() { echo "| $1 | ${R[duet.$2]} | ${R[$ref.$2]} | $(ratio "${R[duet.$2]}" "${R[$ref.$2]}") |"; }
ran() { [[ ",$kinds," == *,$1,* ]]; }
for mode in "${mode_list[@]}"; do
  ran put && row "put MB/s, $mode" "$mode.put"
  ran get && row "get MB/s, $mode" "$mode.get"
done
for mode in "${mode_list[@]}"; do
  ran nput && row "$clients clients put MB/s (total), $mode" "$mode.nput"
  ran nget && row "$clients clients get MB/s (total), $mode" "$mode.nget"
done
for mode in "${mode_list[@]}"; do
  { ran put || ran nput; } && row "server CPU s/GiB put, $mode (lower is better)" "$mode.cpuput"
  { ran get || ran nget; } && row "server CPU s/GiB get, $mode (lower is better)" "$mode.cpuget"
done
for suite in ${suites[@]+"${suites[@]}"}; do
  case $suite in
    *path-contention*) row "path-contention ops/s (open+close)" "$suite" ;;
    *) row "echo ops/s" "$suite" ;;
  esac
done
if [ "$ref" = lone ]; then
  row "4 KiB durable WRITE, one at a time, ms (lower is better)" writems
fi
row "peak RSS MiB (lower is better)" rss
row "peak PSS MiB, process tree (lower is better)" pss
if [ "$ref" = lone ]; then
  # Whether the mirror stayed attached: a resync or a degraded node A means
  # part of the run measured A alone.
  echo
  echo "Each durable answer on node A took $(awk -v a="${R[duet.writems]}" -v b="${R[$ref.writems]}" \
    'BEGIN { if (a == "-" || b == "-") print "?"; else printf "%.3f", a - b }') ms more than alone (the WRITE rows' medians): the round trip to B and B's sync of its mirror ring under $partner_policy."
  echo
  echo "Node A's mirror at the end: $(pair_field "$out/duet" mirror.state), resyncs $(pair_field "$out/duet" mirror.resyncs) (1: only the first attach), degraded $(pair_field "$out/duet" degraded), lag $(pair_field "$out/duet" mirror.lag_bytes) B; partner B's CPU over the run: $(awk -v a="$partner_cpu0" -v b="$(tree_cpu "$PARTNER_PID" | cut -d' ' -f1)" 'BEGIN { printf "%.2f", b - a }') s"
fi
echo
echo "The runs, MB/s:"
echo
echo '```'
for mode in "${mode_list[@]}"; do
  for kind in "${kind_list[@]}"; do
    for name in duet "$ref"; do
      printf '%-*s %-9s %-4s:%s\n' "$w" "$name" "$mode" "$kind" "${RUNS[$name.$mode.$kind]}"
    done
  done
done
echo '```'
if [ -n "${BENCH_LIMIT_CMD:-}" ]; then
  echo
  echo "The medium's limit (BENCH_LIMIT_CMD) after each round's puts, and duet's put over it round by round:"
  echo
  echo '```'
  for mode in "${mode_list[@]}"; do
    # shellcheck disable=SC2086
    python3 - "$mode" "${RUNS[duet.$mode.put]:-}" "${LIMITS[$mode]:-}" <<'PY'
import statistics, sys
mode, puts, lims = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
ratios = [f"{float(p) / float(l):.2f}" for p, l in zip(puts, lims) if p != "-" and l != "-" and float(l) > 0]
med = statistics.median(float(r) for r in ratios) if ratios else float("nan")
print(f"limit {mode:9s} put :{''.join(' ' + l for l in lims)}")
print(f"duet/limit {mode:4s} put :{''.join(' ' + r for r in ratios)} (median {med:.2f})")
PY
  done
  echo '```'
fi
if [ "$torture_rounds" -gt 1 ] && [ ${#suites[@]} -gt 0 ]; then
  echo
  echo "The smbtorture runs, ops/s:"
  echo
  echo '```'
  for suite in "${suites[@]}"; do
    for name in duet "$ref"; do
      printf '%-*s %s:%s\n' "$w" "$name" "$suite" "${RUNS[$name.$suite]}"
    done
  done
  echo '```'
fi
if [ "$ref" = lone ]; then
  echo
  echo "The 4 KiB durable WRITE runs, ms each:"
  echo
  echo '```'
  for name in duet "$ref"; do printf '%-*s:%s\n' "$w" "$name" "${RUNS[$name.writems]}"; done
  echo '```'
fi
echo
echo "Peak PSS MiB (RSS) by transfer:"
echo
echo '```'
for mode in "${mode_list[@]}"; do
  for kind in "${kind_list[@]}"; do
    for name in duet "$ref"; do
      printf '%-*s %-9s %-4s: %s (%s)\n' "$w" "$name" "$mode" "$kind" "${R[$name.pss.$mode.$kind]:--}" "${R[$name.rss.$mode.$kind]:--}"
    done
  done
done
echo '```'
if [ $stall = 1 ]; then
  DUET_BIN=$(duet_bin); DUET_BIN=$(cd "$(dirname "$DUET_BIN")" && pwd)/$(basename "$DUET_BIN"); export DUET_BIN
  stall_table
fi
[ $keep = 1 ] && echo && echo "logs in $out"
exit $((stall_status == 0 ? 0 : 1))
