#!/usr/bin/env bash
# bench-journal.sh [--size MIB] [--rounds R] [--time S] [--out DIR]
#
# What the journal costs (issue 13), measured side by side on this machine:
#
#   1. The medium's limit: SIZE MiB written in 1 MiB chunks to a file in the
#      run's folder (beside the journals), each chunk followed by fdatasync:
#      how fast this file system makes bytes durable, in MB/s; and 4 KiB
#      writes each followed by fdatasync, in syncs/s (what one small record
#      per sync would get). And the limit for duet's own pattern: SIZE MiB in
#      8 MiB writes (smbclient's WRITE size), each followed by fdatasync and
#      then by a 4 KiB write + fdatasync to a second file (a journal record
#      made durable after the data it answers for): the fewest syncs a
#      durable 8 MiB WRITE whose data is not copied into the journal costs.
#      Both measured again right before and right after the group rows, and
#      the 1 MiB limit after each round's puts of the group rows (bench.sh's
#      BENCH_LIMIT_CMD): group put over the limit of its own round.
#   2. scripts/bench.sh with the same duet binary twice: `--journal-policy
#      process` against `--no-journal` (plain mode: put, get, 4-client
#      put/get, path-contention open+close, echo).
#   3. The same with `--journal-policy group` against `--no-journal`.
#
# Prints the two bench tables (their ratio column is policy / no journal),
# then one line per policy with its put against the medium's limit. Defaults:
# 1024 MiB, 5 rounds, 10 s smbtorture benches. MB = 10^6 bytes.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
size=1024 rounds=5 secs=10 out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --time) secs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "bench-journal.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
keep=1
if [ -z "$out" ]; then out=$(mktemp -d /tmp/duet-bench-journal.XXXXXX); keep=0; fi
mkdir -p "$out"; out=$(cd "$out" && pwd)
[ $keep = 0 ] && trap 'rm -rf "$out"' EXIT
DUET_BIN=$(duet_bin); DUET_BIN=$(cd "$(dirname "$DUET_BIN")" && pwd)/$(basename "$DUET_BIN")
export DUET_BIN

# The medium's limits (see 1. above), printed as "MB/s syncs/s paired-MB/s".
limits() {
  python3 - "$out/fdatasync.bin" "$size" <<'PY'
import os, sys, time
path, mib = sys.argv[1], int(sys.argv[2])
chunk = os.urandom(1 << 20)
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
t = time.perf_counter()
for _ in range(mib):
    os.write(fd, chunk)
    os.fdatasync(fd)
mbs = mib * (1 << 20) / 1e6 / (time.perf_counter() - t)
os.lseek(fd, 0, 0)
small, n, t = chunk[:4096], 0, time.perf_counter()
while time.perf_counter() - t < 3:
    os.write(fd, small)
    os.fdatasync(fd)
    n += 1
syncs = n / (time.perf_counter() - t)
os.close(fd)
os.unlink(path)
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
rec = os.open(path + ".rec", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
big, t = chunk * 8, time.perf_counter()
for _ in range(max(mib // 8, 1)):
    os.write(fd, big)
    os.fdatasync(fd)
    os.pwrite(rec, small, 0)
    os.fdatasync(rec)
paired = max(mib // 8, 1) * len(big) / 1e6 / (time.perf_counter() - t)
os.close(fd)
os.close(rec)
os.unlink(path)
os.unlink(path + ".rec")
print(f"{mbs:.1f} {syncs:.0f} {paired:.1f}")
PY
}
read -r limit_mb syncs paired_mb <<<"$(limits)"
# The 1 MiB limit alone, for bench.sh to measure after each round's puts of
# the group rows (BENCH_LIMIT_CMD).
cat >"$out/limit.py" <<'PY'
import os, sys, time
path, mib = sys.argv[1], int(sys.argv[2])
chunk = os.urandom(1 << 20)
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
t = time.perf_counter()
for _ in range(mib):
    os.write(fd, chunk)
    os.fdatasync(fd)
print(f"{mib * (1 << 20) / 1e6 / (time.perf_counter() - t):.1f}")
os.close(fd)
os.unlink(path)
PY
echo "Medium (fdatasync after each 1 MiB, $size MiB): $limit_mb MB/s; 4 KiB write + fdatasync: $syncs/s"
echo "Medium, a durable WRITE's pattern (8 MiB + fdatasync, then 4 KiB + fdatasync in a second file): $paired_mb MB/s"

for policy in process group; do
  if [ $policy = group ]; then
    # The disk's sync latency drifts within minutes here: the group rows get the
    # limits measured right before and right after them as well.
    read -r before_mb _ before_paired <<<"$(limits)"
    echo "Medium right before the group rows: $before_mb MB/s; the durable-WRITE pattern: $before_paired MB/s"
  fi
  echo
  echo "### --journal-policy $policy against --no-journal"
  limit_cmd=""
  [ $policy = group ] && limit_cmd="python3 $out/limit.py $out/fdatasync-round.bin $size"
  BENCH_LIMIT_CMD=$limit_cmd BENCH_REF_DUET=$DUET_BIN BENCH_REF_ARGS=--no-journal BENCH_DUET_ARGS="--journal-policy $policy" \
    bash "$(dirname "$0")/bench.sh" --modes plain --size "$size" --rounds "$rounds" --time "$secs" \
    --out "$out/$policy" | tee "$out/$policy.md"
done

read -r after_mb _ after_paired <<<"$(limits)"
echo "Medium right after the group rows: $after_mb MB/s; the durable-WRITE pattern: $after_paired MB/s"
echo
for policy in process group; do
  put=$(awk -F'|' '/^\| put MB\/s, plain \|/ {gsub(/ /,"",$3); print $3; exit}' "$out/$policy.md")
  python3 -c "import sys; p=float(sys.argv[2]); l=float(sys.argv[3]); print(f'{sys.argv[1]} put {p:.1f} MB/s = {p/l:.2f} of the medium\\'s fdatasync limit ({l:.1f} MB/s)')" \
    "$policy" "${put:-0}" "$limit_mb"
done
put=$(awk -F'|' '/^\| put MB\/s, plain \|/ {gsub(/ /,"",$3); print $3; exit}' "$out/group.md")
python3 -c "import sys; p=float(sys.argv[1]); l=[float(x) for x in sys.argv[2:]]; print(f'group put {p:.1f} MB/s = {p/l[0]:.2f} / {p/l[1]:.2f} of the medium right before / after it ({l[0]:.1f} / {l[1]:.1f} MB/s); {p/l[2]:.2f} / {p/l[3]:.2f} of the durable-WRITE pattern ({l[2]:.1f} / {l[3]:.1f} MB/s)')" \
  "${put:-0}" "$before_mb" "$after_mb" "$before_paired" "$after_paired"
