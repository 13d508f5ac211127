#!/usr/bin/env bash
# bench.sh [--size MIB] [--time S] [--nprocs N] [--rounds R] [--out DIR]
#
# Benchmarks duet and Samba's smbd side by side, in one run, with the same
# client, the same files and the same options, each on its own loopback port
# and temp share (user duet:duetpass):
#
#   put MB/s                 smbclient put of a SIZE MiB file (default 1024),
#                            generated once from /dev/urandom into a temp dir;
#                            the median of R rounds (default 3), duet and smbd
#                            alternating
#   get MB/s                 smbclient get of that file back (to /dev/null),
#                            the same way
#   path-contention ops/s    smbtorture smb2.bench.path-contention-shared,
#                            N connections (default 4) for S seconds (default
#                            10): opens + closes per second, averaged
#   echo ops/s               smbtorture smb2.bench.echo, same N and S
#   peak RSS MiB             the server's peak resident memory: the largest sum
#                            of VmRSS over its whole process tree (smbd forks one
#                            process per client) sampled every 0.2 s, or the
#                            main process's VmHWM if larger
#   peak PSS MiB             the same with PSS (smaps_rollup), which does not
#                            count pages shared between smbd's processes twice
#
# MB = 10^6 bytes. Each part runs on duet, then on smbd (put and get in
# alternating rounds). Prints a Markdown
# table with columns duet, smbd and duet/smbd.
#
# DUET_BIN selects duet (default: build target/release/duet). With
# BENCH_DUET=smbd (or DUET_TEST_SERVER=smbd) a second smbd stands in for duet,
# to check this script. Needs: smbclient, smbtorture, smbd, python3.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

size_mib=1024; secs=10; nprocs=4; rounds=3; out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size_mib=$2; shift 2 ;;
    --time) secs=$2; shift 2 ;;
    --nprocs) nprocs=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "${BENCH_DUET:-}" = smbd ] && export DUET_TEST_SERVER=smbd
for tool in smbclient smbtorture smbd python3; do
  command -v "$tool" >/dev/null || { echo "bench.sh: $tool missing (run scripts/install-deps.sh)" >&2; exit 2; }
done

keep=1
if [ -z "$out" ]; then out=$(mktemp -d /tmp/duet-bench.XXXXXX); keep=0; fi
mkdir -p "$out"; out=$(cd "$out" && pwd); chmod 755 "$out"
samplers=()
cleanup() {
  local p
  for p in ${samplers[@]+"${samplers[@]}"}; do kill "$p" 2>/dev/null || true; done
  stop_all
  if [ $keep = 0 ]; then rm -rf "$out"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$out/duet" "$out/smbd"
start_duet DUET "$out/duet"
start_smbd SMBD "$out/smbd"

# Peak memory sampler: NAME PID -> writes max KiB to $out/NAME.rss
sample_rss() {
  python3 - "$2" "$out/$1.rss" <<'EOF' &
import os, sys, time
root, path = int(sys.argv[1]), sys.argv[2]
def status(pid):
    d = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                d[k] = v.strip()
    except OSError:
        pass
    return d
def pss(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
peak = peak_pss = 0
while os.path.exists(f"/proc/{root}"):
    kids = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            ppid = status(p).get("PPid")
            if ppid:
                kids.setdefault(int(ppid), []).append(int(p))
    tree, todo = [], [root]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(kids.get(p, []))
    total = sum(int(status(p).get("VmRSS", "0 kB").split()[0]) for p in tree)
    hwm = int(status(root).get("VmHWM", "0 kB").split()[0])
    peak = max(peak, total, hwm)
    peak_pss = max(peak_pss, sum(pss(p) for p in tree))
    with open(path + ".tmp", "w") as f:
        f.write(f"{peak} {peak_pss}\n")
    os.replace(path + ".tmp", path)
    time.sleep(0.2)
EOF
  samplers+=($!)
}
sample_rss duet "$DUET_PID"
sample_rss smbd "$SMBD_PID"

bytes=$((size_mib * 1024 * 1024))
log "generating a $size_mib MiB test file"
mkdir -p "$out/client"
head -c "$bytes" /dev/urandom > "$out/client/big.bin"

smbc() { # PORT CMDS
  smbclient //127.0.0.1/share -p "$1" -U "$DUET_USER%$DUET_PASS" -m SMB3 -c "$2" </dev/null
}
declare -A R

timed() { # -> seconds on stdout; the command's output goes to $out/last.log
  local t0 t1
  t0=$(date +%s.%N)
  if ! (cd "$out/client" && "$@") >"$out/last.log" 2>&1 || grep -q NT_STATUS_ "$out/last.log"; then
    log "failed: $*"; cat "$out/last.log" >&2
    echo fail; return
  fi
  t1=$(date +%s.%N)
  echo "$t0 $t1" | awk '{printf "%.3f", $2 - $1}'
}
mbps() { # SECONDS -> MB/s
  [ "$1" = fail ] && { echo "-"; return; }
  awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.1f", b / 1e6 / s }'
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

# Put and get alternate between the servers, ROUNDS times each, and the
# median counts: on a shared machine one transfer can land in a noisy
# second, and alternating spreads the noise over both servers alike.
declare -A PUTS GETS
for round in $(seq 1 "$rounds"); do
  for name in duet smbd; do
    port_var=${name^^}_PORT; port=${!port_var}
    rm -f "$out/$name/share/big.bin"
    # Start each transfer with no dirty pages left over from the last one:
    # otherwise the kernel's writeback throttling, not the server, sets the
    # pace, and it falls on whichever server comes next.
    sync
    log "$name: put $size_mib MiB (round $round)"
    t=$(timed smbc "$port" "put big.bin big.bin")
    r=$(mbps "$t")
    got=$(stat -c %s "$out/$name/share/big.bin" 2>/dev/null || echo 0)
    if [ "$got" != "$bytes" ]; then log "$name: server-side file has $got bytes, expected $bytes"; r="-"; fi
    log "$name: put took ${t}s ($r MB/s)"
    PUTS[$name]="${PUTS[$name]:-} $r"
    sync
    log "$name: get $size_mib MiB (round $round)"
    t=$(timed smbc "$port" "get big.bin /dev/null")
    r=$(mbps "$t")
    log "$name: get took ${t}s ($r MB/s)"
    GETS[$name]="${GETS[$name]:-} $r"
  done
done
for name in duet smbd; do
  # shellcheck disable=SC2086
  R[$name.put]=$(median ${PUTS[$name]})
  # shellcheck disable=SC2086
  R[$name.get]=$(median ${GETS[$name]})
  log "$name: put runs:${PUTS[$name]} MB/s, get runs:${GETS[$name]} MB/s"
done

# smbtorture bench: SUITE PORT -> average ops/s over the reported seconds.
torture_bench() {
  local suite=$1 port=$2 name=$3
  smbtorture //127.0.0.1/share -p "$port" -U "$DUET_USER%$DUET_PASS" \
    --option=torture:nprocs="$nprocs" --option=torture:timelimit="$secs" \
    "$suite" </dev/null >"$out/$name.$suite.log" 2>&1 & wait $! || true
  python3 - "$out/$name.$suite.log" <<'EOF'
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
EOF
}
for suite in smb2.bench.path-contention-shared smb2.bench.echo; do
  for name in duet smbd; do
    port_var=${name^^}_PORT
    log "$name: $suite, $nprocs connections, ${secs}s"
    R[$name.$suite]=$(torture_bench "$suite" "${!port_var}" "$name")
    log "$name: $suite: ${R[$name.$suite]} ops/s"
  done
done

sleep 0.5
for name in duet smbd; do
  read -r kib pss_kib < "$out/$name.rss" 2>/dev/null || { kib=0; pss_kib=0; }
  R[$name.rss]=$(awk -v k="$kib" 'BEGIN { if (k > 0) printf "%.1f", k / 1024; else print "-" }')
  R[$name.pss]=$(awk -v k="${pss_kib:-0}" 'BEGIN { if (k > 0) printf "%.1f", k / 1024; else print "-" }')
done

ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'
}
label_duet=duet; [ "${DUET_TEST_SERVER:-duet}" = smbd ] && label_duet="duet (smbd stand-in)"
echo
echo "## Duet vs smbd: $size_mib MiB file, $nprocs connections, ${secs}s per smbtorture bench"
echo
echo "| metric | $label_duet | smbd | duet/smbd |"
echo "|---|---:|---:|---:|"
row() { echo "| $1 | ${R[duet.$2]} | ${R[smbd.$2]} | $(ratio "${R[duet.$2]}" "${R[smbd.$2]}") |"; }
row "put MB/s" put
row "get MB/s" get
row "path-contention ops/s (open+close)" smb2.bench.path-contention-shared
row "echo ops/s" smb2.bench.echo
row "peak RSS MiB (lower is better)" rss
row "peak PSS MiB, process tree (lower is better)" pss
[ $keep = 1 ] && echo && echo "logs in $out"
exit 0
