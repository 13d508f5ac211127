#!/usr/bin/env bash
# torture.sh [--fast] [--out DIR] [--timeout S] [--option K=V ...] [--smbd-option 'K = V' ...] [SUITE...]
#
# Runs smbtorture suites against duet and against Samba's smbd (the
# reference), each on its own loopback port, temp share and user
# duet:duetpass, and prints the comparison table from
# ../shared/tools/torture-score (duet vs smbd, with --details).
# Exit status: the table's, i.e. 0 when duet passes at least as many tests as
# smbd on every suite, 1 otherwise (2 on a setup error).
#
#   --fast        only the CI subset: connect read rw create dir compound lock
#                 durable-open durable-v2-open durable-v2-delay
#   --ca          serve duet's share as continuously available (--ca share:
#                 persistent handles); smbd 4.17 has none, so its share stays
#                 a plain one
#   --out DIR     keep results there (duet.json, smbd.json, logs); default: a
#                 temp dir, removed at exit
#   --timeout S   per-suite limit for torture-score (default 300, fast: 120)
#   --option K=V  passed to smbtorture as --option=K=V, against both servers
#                 (smb2.ea.acl_xattr needs torture:acl_xattr_name=NAME: with
#                 duet.uid it checks that Duet's own xattr is no EA)
#   --smbd-option 'K = V'
#                 an smb.conf option for the reference smbd only, e.g.
#                 'vfs objects = streams_xattr' for smb2.streams (Duet keeps
#                 streams as streams_xattr does; plain smbd refuses them)
#   SUITE...      explicit suites instead of the lists below
#
# Environment: DUET_BIN (default: build target/release/duet),
# DUET_TEST_SERVER=smbd runs a second smbd in duet's place (to check this
# script), REF_SMBD, TORTURE_SCORE (paths of the shared tools).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

FULL=(smb2.connect smb2.create smb2.read smb2.rw smb2.getinfo smb2.setinfo smb2.dir
      smb2.compound smb2.credits smb2.tcon smb2.lock smb2.rename smb2.sharemode
      smb2.delete-on-close-perms smb2.timestamps smb2.fileid smb2.maxfid
      smb2.durable-open smb2.durable-v2-open smb2.durable-v2-delay smb2.replay)
FAST=(smb2.connect smb2.read smb2.rw smb2.create smb2.dir smb2.compound smb2.lock
      smb2.durable-open smb2.durable-v2-open smb2.durable-v2-delay)

fast=0; ca=0; out=""; timeout=""; suites=(); options=(); smbd_options=()
while [ $# -gt 0 ]; do
  case "$1" in
    --fast) fast=1; shift ;;
    --ca) ca=1; shift ;;
    --out) out=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --option) options+=(--option "$2"); shift 2 ;;
    --smbd-option) smbd_options+=(--option "$2"); shift 2 ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    -*) echo "torture.sh: unknown option $1" >&2; exit 2 ;;
    *) suites+=("$1"); shift ;;
  esac
done
if [ ${#suites[@]} -eq 0 ]; then
  if [ $fast = 1 ]; then suites=("${FAST[@]}"); else suites=("${FULL[@]}"); fi
fi
[ -n "$timeout" ] || { [ $fast = 1 ] && timeout=120 || timeout=300; }

for tool in smbtorture smbd python3; do
  command -v "$tool" >/dev/null || { echo "torture.sh: $tool missing (run scripts/install-deps.sh)" >&2; exit 2; }
done

keep=1
if [ -z "$out" ]; then out=$(mktemp -d /tmp/duet-torture.XXXXXX); keep=0; fi
mkdir -p "$out"; out=$(cd "$out" && pwd)
chmod 755 "$out"
cleanup() {
  stop_all
  if [ $keep = 0 ]; then rm -rf "$out"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Run a command in the background and wait for it, so that a TERM reaches
# the trap at once instead of after the command ends.
run() { "$@" & wait $!; }

rm -rf "$out/duet" "$out/smbd"
duet_ok=1
duet_args=()
[ $ca = 1 ] && duet_args=(--ca share)
start_duet DUET "$out/duet" ${duet_args[@]+"${duet_args[@]}"} || duet_ok=0
start_smbd SMBD "$out/smbd" ${smbd_options[@]+"${smbd_options[@]}"} || { echo "torture.sh: smbd did not start" >&2; exit 2; }

score() { # NAME PORT JSON
  log "running ${#suites[@]} suites against $1 (127.0.0.1:$2, timeout ${timeout}s each)"
  run python3 "$TORTURE_SCORE" run --server //127.0.0.1/share --port "$2" \
    --user "$DUET_USER%$DUET_PASS" --timeout "$timeout" ${options[@]+"${options[@]}"} --out "$3" "${suites[@]}"
}

if [ $duet_ok = 1 ]; then
  score duet "$DUET_PORT" "$out/duet.json"
else
  # No server: record every suite as reported nothing, so the table shows it.
  python3 - "$out/duet.json" "${suites[@]}" <<'EOF'
import json, sys
json.dump({"server": "duet (did not start)", "suites": {s: {"tests": {}, "rc": None,
          "cut_short": True, "seconds": 0, "tail": ["duet did not start"]} for s in sys.argv[2:]}},
          open(sys.argv[1], "w"), indent=1)
EOF
fi
score smbd "$SMBD_PORT" "$out/smbd.json"
stop_all

echo
echo "## smbtorture: duet vs smbd"
echo
python3 - "$out/duet.json" "$out/smbd.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
print("| suite | duet s | smbd s |")
print("|---|---:|---:|")
for s in b["suites"]:
    ra, rb = a["suites"].get(s, {}), b["suites"][s]
    cut = lambda r: " (cut short)" if r.get("cut_short") else ""
    print(f"| {s} | {ra.get('seconds', '-')}{cut(ra)} | {rb['seconds']}{cut(rb)} |")
print()
EOF
set +e
python3 "$TORTURE_SCORE" table "$out/duet.json" "$out/smbd.json" --names duet,smbd --details
rc=$?
set -e
[ $keep = 1 ] && echo "results in $out"
exit $rc
