#!/usr/bin/env bash
# failover.sh: the takeover harness (issue 14, first takeover).
#
#   scripts/failover.sh [--kills N] [--freezes N] [--elective N] [--blocks N] [--size B] [--out DIR]
#                       [--stalls FILE] [--lab [--hold S] [--no-tickle]]
#
# With --lab (root) each round runs in a fresh `duet lab` instead: node A in a
# network namespace serves set A on 127.0.0.11:445, node B in another on
# 127.0.0.12:445, the client runs in the client namespace (`duet lab exec`).
# The taker adds the address, announces it and tickles the old owner's
# clients, so a frozen A stays frozen until the client has finished (or --hold
# seconds, default 15, have passed) and is thawed only then: the freeze stall
# is the tickle's, not the thaw's. --no-tickle leaves the tickle out (failpoint
# no-tickle), to measure what it saves. After each fault a probe (`duet lab
# status`) checks that no two nodes answer one address (a client error if so).
# An --elective round in the lab runs `duet lab takeover A` and `duet lab
# giveback A` (`duet takeover` and `duet giveback` in B's namespace) and
# checks after each that set A's address is held and answered by the node
# that serves it now (B, then A again), a client error if not.
#
# Each round starts a fresh pair on loopback ($DUET_BIN, else
# target/release/duet, else a fresh release build): node A serves set A
# (share seta) on 127.0.1.1:PORT, node B set B on 127.0.1.2:PORT, over one
# storage folder. A client (testdata/failover_client.py: one durable v2
# open, append-only, so a WRITE carried out twice shows as a block twice)
# writes N blocks (default 200 of 3000 bytes) on A's address; after a
# quarter of them, A is killed (SIGKILL, --kills rounds) or frozen (SIGSTOP
# until B has claimed its set, then SIGCONT: A must step down, --freezes
# rounds). The client reconnects to the same address (now B), reclaims its
# handle, resends the unanswered WRITE with the replay flag and finishes.
# The file is then checked on disk: every block once, in order.
#
# A keeps a small WRITE's data in its journal record (policy group) so that
# a resend's replay key is found in the mirrored log; B stores the mirror
# without a disk sync (policy process).
#
# An --elective round moves set A twice while the client writes: after a
# quarter of the blocks `duet takeover` on B (A drains, saves its state into
# its journal, which B's mirror holds, and releases; B claims, restores and
# binds), after half of them `duet giveback` on B (B saves the set's journal
# into the storage folder and releases; A restores from it and binds). So
# every elective round is one elective takeover and one giveback.
#
# Ends with exactly one line on stdout:
#   kills K, freezes F, elective E, givebacks G, requests R, lost L, duplicated D, client errors C
# and exits non-zero unless L, D and C are all 0. Stalls (from the client's last
# answer before the fault to its first after) go to stderr per kind, and with
# --stalls FILE to FILE, one `KIND MS` line per measured stall (KIND kill,
# freeze, elective or giveback; scripts/bench.sh --kinds stall reads it). A
# round whose client had finished before the fault measures no stall. The
# run's folder is kept when something went wrong, or always with --out.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kills=3 freezes=2 elective=0 blocks=200 size=3000 out="" lab=0 hold=15 tickle=1 stalls_file=""
while [ $# -gt 0 ]; do
  case $1 in
    --lab) lab=1; shift ;;
    --hold) hold=$2; shift 2 ;;
    --no-tickle) tickle=0; shift ;;
    --kills) kills=$2; shift 2 ;;
    --freezes) freezes=$2; shift 2 ;;
    --elective) elective=$2; shift 2 ;;
    --blocks) blocks=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --stalls) stalls_file=$2; shift 2 ;;
    -h|--help) sed -n '2,51p' "$0"; exit 0 ;;
    *) echo "failover.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -n "$stalls_file" ]; then : >"$stalls_file"; fi

if [ -z "${DUET_BIN:-}" ] && [ -x "$repo/target/release/duet" ]; then
  DUET_BIN=$repo/target/release/duet
fi
bin=$(duet_bin)
keep=0
if [ -n "$out" ]; then
  mkdir -p "$out"; base=$(cd "$out" && pwd); keep=1
else
  base=$(mktemp -d /tmp/duet-failover.XXXXXX)
fi
pids=()
labs=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -9 "$p" 2>/dev/null || true; done
  for p in "${labs[@]}"; do "$bin" lab --dir "$p" stop >/dev/null 2>&1 || true; done
  if [ "$keep" = 0 ]; then rm -rf "$base"; else log "failover: kept $base"; fi
}
trap cleanup EXIT

status_json() { "$bin" status --json --socket "$1/state/admin.sock" 2>/dev/null || true; }

# wait_until DIR PYTHON-EXPR-ON-p (the pair object) [SECONDS]
wait_until() {
  local dir=$1 expr=$2 limit=${3:-60} i
  for i in $(seq $((limit * 10))); do
    if status_json "$dir" | python3 -c "import json,sys
try: p=json.load(sys.stdin)['pair']
except Exception: sys.exit(1)
sets={s['set']: s for s in p.get('sets', [])}
sys.exit(0 if ($expr) else 1)" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

start_node() { # DIR ID POLICY
  local dir=$1 id=$2 policy=$3 partner=$((3 - $2))
  local set=seta pset=setb
  [ "$id" = 2 ] && set=setb pset=seta
  mkdir -p "$dir"
  (cd "$dir" && exec "$bin" serve --share "seta=$round/storage/seta" --share "setb=$round/storage/setb" \
    --user "$DUET_USER:$DUET_PASS" --log-level "${DUET_LOG_LEVEL:-info}" \
    --journal nvram --journal-size 16M --journal-policy "$policy" --state-dir state \
    --pair-cluster 7 --pair-node "$id" --pair-partner-node "$partner" --pair-incarnation 1 \
    --pair-listen "127.0.0.1:${ic[$id]}" --pair-partner "127.0.0.1:${ic[$partner]}" \
    --pair-storage "$round/storage/.duet" \
    --pair-address "127.0.1.$id:$port" --pair-shares "$set" \
    --pair-partner-address "127.0.1.$partner:$port" --pair-partner-shares "$pset" \
    </dev/null >>"$dir/duet.log" 2>&1) &
  pids+=($!)
  eval "pid_$id=$!"
}

requests=0 lost=0 dup=0 errors=0 kills_done=0 freezes_done=0 elective_done=0 givebacks_done=0
stalls_kill=() stalls_freeze=() stalls_elective=() stalls_giveback=()

# wrote: how many blocks the client answered so far (0 before its output exists).
wrote() {
  local c
  c=$(grep -c '"wrote"' "$round/client.out" 2>/dev/null) || true
  echo "${c:-0}"
}

# wait_wrote N: until the client answered N blocks.
wait_wrote() {
  for _ in $(seq 1200); do
    [ "$(wrote)" -ge "$1" ] && return 0
    sleep 0.05
  done
  return 1
}

# move CMD: runs `duet CMD` on B; prints "T0 T1" (when it began and ended), or fails.
move() {
  local t0 t1
  t0=$(date +%s.%N)
  if ! "$bin" "$1" --socket "$round/b/state/admin.sock" >>"$round/moves.log" 2>&1; then return 1; fi
  t1=$(date +%s.%N)
  echo "$t0 $t1"
}

# stall T0 T1: the client's longest gap between two answers around [T0, T1], in ms.
stall() {
  python3 - "$round/client.out" "$1" "$2" <<'EOF'
import json, sys
t0, t1 = float(sys.argv[2]), float(sys.argv[3])
ts = []
for line in open(sys.argv[1]):
    try:
        d = json.loads(line)
    except Exception:
        continue
    if "wrote" in d:
        ts.append(d["t"])
gaps = [b - a for a, b in zip(ts, ts[1:]) if b >= t0 and a <= t1]
print(round(max(gaps) * 1000) if gaps else -1)
EOF
}

# ---- --lab: one round in a `duet lab` ------------------------------------------
# lab_probe DIR: fails when two nodes answer one address.
lab_probe() {
  "$bin" lab --dir "$1" status --json | python3 -c "import json,sys
st=json.load(sys.stdin)
sys.exit(1 if any(len(s['answering']) > 1 for s in st['sets']) else 0)"
}

# lab_node_state DIR NODE: running, frozen or dead.
lab_node_state() {
  "$bin" lab --dir "$1" status --json | python3 -c "import json,sys
print([n['state'] for n in json.load(sys.stdin)['nodes'] if n['node']==sys.argv[1]][0])" "$2"
}

# lab_move DIR CMD: `duet lab CMD A` (takeover or giveback); prints "T0 T1", or fails.
lab_move() {
  local t0 t1
  t0=$(date +%s.%N)
  if ! "$bin" lab --dir "$1" "$2" A >>"$round/moves.log" 2>&1; then return 1; fi
  t1=$(date +%s.%N)
  echo "$t0 $t1"
}

# lab_address_at DIR NODE: fails unless set A's address is held and answered by NODE alone.
lab_address_at() {
  "$bin" lab --dir "$1" status --json | python3 -c "import json,sys
s=[s for s in json.load(sys.stdin)['sets'] if s['set']=='A'][0]
sys.exit(0 if s['held_by']==[sys.argv[1]] and s['answering']==[sys.argv[1]] else 1)" "$2"
}

# lab_elective N DIR: set A to B (`duet lab takeover A`) after a quarter of the
# blocks, back to A (`duet lab giveback A`) after half; sets span and span2.
lab_elective() {
  local n=$1 ldir=$2
  wait_until "$ldir/b" "p['partner_mirror']['current']" 30 || true
  kill -0 "$client" 2>/dev/null || late=1
  if ! span=$(lab_move "$ldir" takeover); then
    log "failover: round $n: the takeover failed: $(tail -n 1 "$round/moves.log")"; errors=$((errors + 1)); keep=1
    span=""; return
  fi
  elective_done=$((elective_done + 1))
  if ! lab_address_at "$ldir" B; then
    log "failover: round $n: after the takeover set A's address is not B's alone"; errors=$((errors + 1)); keep=1
  fi
  wait_wrote $((blocks / 2)) || true
  wait_until "$ldir/a" "p['partner_mirror']['current'] and p['mirror']['state']=='current'" 30 || true
  kill -0 "$client" 2>/dev/null || late2=1
  if ! span2=$(lab_move "$ldir" giveback); then
    log "failover: round $n: the giveback failed: $(tail -n 1 "$round/moves.log")"; errors=$((errors + 1)); keep=1
    span2=""; return
  fi
  givebacks_done=$((givebacks_done + 1))
  if ! lab_address_at "$ldir" A; then
    log "failover: round $n: after the giveback set A's address is not A's alone"; errors=$((errors + 1)); keep=1
  fi
}

# lab_round N KIND: sets file= (the client's file) and client.out in $round.
lab_round() {
  local n=$1 kind=$2 ldir=$round/lab env=() probe_bad=0
  [ "$tickle" = 0 ] && env=(DUET_FAILPOINT=no-tickle:1)
  labs+=("$ldir")
  if ! env "${env[@]}" "$bin" lab --dir "$ldir" up --name "fo$$-$n" \
      --a-arg=--journal-policy=group --b-arg=--journal-policy=process >"$round/lab-up.out" 2>&1; then
    log "failover: round $n: the lab never came up ($(tail -n 1 "$round/lab-up.out"))"; errors=$((errors + 1)); keep=1
    return 1
  fi
  "$bin" lab --dir "$ldir" exec -- python3 "$repo/testdata/failover_client.py" --host 127.0.0.11 --port 445 \
    --share seta --append --user "$DUET_USER" --password "$DUET_PASS" --blocks "$blocks" --size "$size" \
    --pause 0.005 >"$round/client.out" 2>"$round/client.err" &
  client=$!
  local w
  for _ in $(seq 600); do
    w=$(grep -c '"wrote"' "$round/client.out" 2>/dev/null || true)
    [ "${w:-0}" -ge $((blocks / 4)) ] && break
    sleep 0.05
  done
  if [ "$kind" = kill ]; then
    kill -0 "$client" 2>/dev/null || late=1
    "$bin" lab --dir "$ldir" kill A; kills_done=$((kills_done + 1))
  elif [ "$kind" = elective ]; then
    lab_elective "$n" "$ldir"
  else
    kill -0 "$client" 2>/dev/null || late=1
    "$bin" lab --dir "$ldir" freeze A; freezes_done=$((freezes_done + 1))
    for _ in $(seq $((hold * 10))); do
      kill -0 "$client" 2>/dev/null || break
      lab_probe "$ldir" || probe_bad=1
      sleep 0.1
    done
    "$bin" lab --dir "$ldir" thaw A
    for _ in $(seq 300); do [ "$(lab_node_state "$ldir" A)" = dead ] && break; sleep 0.1; done
    if [ "$(lab_node_state "$ldir" A)" != dead ]; then
      log "failover: round $n: A did not step down on thaw"; errors=$((errors + 1)); keep=1
    fi
  fi
  wait "$client" || true
  lab_probe "$ldir" || probe_bad=1
  if [ "$probe_bad" = 1 ]; then
    log "failover: round $n: two nodes answered one address"; errors=$((errors + 1)); keep=1
  fi
  file=$ldir/storage/seta/failover.dat
  "$bin" lab --dir "$ldir" stop >/dev/null 2>&1 || true
}

n=0
for kind in $(for _ in $(seq "$kills"); do echo kill; done; for _ in $(seq "$freezes"); do echo freeze; done
              for _ in $(seq "$elective"); do echo elective; done); do
  n=$((n + 1))
  round=$base/round-$n-$kind
  late=0 late2=0 span="" span2=""
  mkdir -p "$round/storage/seta" "$round/storage/setb" "$round/storage/.duet"
  file=$round/storage/seta/failover.dat
  if [ "$lab" = 1 ]; then
    lab_round "$n" "$kind" || continue
  else
  port=$(free_port); ic=(0 "$(free_port)" "$(free_port)")
  start_node "$round/a" 1 group
  start_node "$round/b" 2 process
  if ! wait_until "$round/a" "p['partner_mirror']['current'] and sets.get(1,{}).get('state')=='serving'" ||
     ! wait_until "$round/b" "p['partner_mirror']['current'] and sets.get(2,{}).get('state')=='serving'"; then
    log "failover: round $n: the pair never came up"; errors=$((errors + 1)); keep=1; continue
  fi
  python3 "$repo/testdata/failover_client.py" --host 127.0.1.1 --port "$port" --share seta --append \
    --user "$DUET_USER" --password "$DUET_PASS" --blocks "$blocks" --size "$size" --pause 0.005 \
    >"$round/client.out" 2>"$round/client.err" &
  client=$!
  for _ in $(seq 600); do
    [ "$(wrote)" -ge $((blocks / 4)) ] && break
    sleep 0.05
  done
  wait_until "$round/b" "p['partner_mirror']['current']" 30 || true
  # A client that finished before the fault saw none: its round measures no stall.
  kill -0 "$client" 2>/dev/null || late=1
  if [ "$kind" = kill ]; then
    kill -9 "$pid_1"; wait "$pid_1" 2>/dev/null || true; kills_done=$((kills_done + 1))
  elif [ "$kind" = elective ]; then
    wait_until "$round/a" "p['partner_mirror']['current']" 30 || true
    if span=$(move takeover); then
      elective_done=$((elective_done + 1))
      wait_wrote $((blocks / 2)) || true
      wait_until "$round/a" "p['partner_mirror']['current'] and p['mirror']['state']=='current'" 30 || true
      kill -0 "$client" 2>/dev/null || late2=1
      if span2=$(move giveback); then
        givebacks_done=$((givebacks_done + 1))
      else
        log "failover: round $n: the giveback failed: $(tail -n 1 "$round/moves.log")"; errors=$((errors + 1)); keep=1
      fi
    else
      log "failover: round $n: the takeover failed: $(tail -n 1 "$round/moves.log")"; errors=$((errors + 1)); keep=1
    fi
  else
    kill -STOP "$pid_1"
    for _ in $(seq 600); do grep -q "claimed the partner's set" "$round/b/duet.log" && break; sleep 0.1; done
    kill -CONT "$pid_1"; freezes_done=$((freezes_done + 1))
    for _ in $(seq 300); do kill -0 "$pid_1" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid_1" 2>/dev/null; then log "failover: round $n: A did not step down on thaw"; errors=$((errors + 1)); keep=1; fi
  fi
  wait "$client" || true
  fi
  last=$(tail -n 1 "$round/client.out" 2>/dev/null || echo '{}')
  read -r r l d e s < <(python3 - "$file" "$blocks" "$size" "$last" <<'EOF'
import json, sys
path, blocks, size, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
try:
    data = open(path, "rb").read()
except OSError:
    data = b""
seen = {}
for k in range(0, len(data), size):
    chunk = data[k:k + size]
    head = chunk[:12]
    try:
        i = int(head.decode().split()[1])
    except Exception:
        i = -1
    want = ((f"block {i:06d}\n".encode()) * (size // 13 + 1))[:size] if i >= 0 else None
    if chunk != want:
        i = -1
    seen[i] = seen.get(i, 0) + 1
lost = sum(1 for i in range(blocks) if i not in seen)
dup = sum(c - 1 for i, c in seen.items() if i >= 0 and c > 1) + seen.get(-1, 0)
try:
    doc = json.loads(last)
except Exception:
    doc = {}
err = 0 if doc.get("done") is True else 1
print(blocks, lost, dup, err, doc.get("stall_ms", -1))
EOF
)
  requests=$((requests + r)); lost=$((lost + l)); dup=$((dup + d)); errors=$((errors + e))
  if [ "$late" = 1 ] && [ "$kind" != elective ]; then
    log "failover: round $n ($kind): the client had finished before the fault: no stall counted"
    s=-1
  fi
  case $kind in
    kill) [ "$s" = -1 ] || stalls_kill+=("$s") ;;
    freeze) [ "$s" = -1 ] || stalls_freeze+=("$s") ;;
    elective)
      # A move after the client finished saw no request: no stall.
      # shellcheck disable=SC2086
      if [ -n "$span" ] && [ "$late" = 0 ] && t=$(stall $span) && [ "$t" != -1 ]; then stalls_elective+=("$t")
      elif [ -n "$span" ]; then log "failover: round $n: no request around the takeover: no stall counted"; fi
      # shellcheck disable=SC2086
      if [ -n "$span2" ] && [ "$late2" = 0 ] && t=$(stall $span2) && [ "$t" != -1 ]; then stalls_giveback+=("$t")
      elif [ -n "$span2" ]; then log "failover: round $n: no request around the giveback: no stall counted"; fi
      ;;
  esac
  log "failover: round $n ($kind): requests $r, lost $l, duplicated $d, client errors $e, stall ${s} ms"
  if [ "$l" != 0 ] || [ "$d" != 0 ] || [ "$e" != 0 ]; then keep=1; fi
  for p in "${pids[@]}"; do
    kill -CONT "$p" 2>/dev/null || true; kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true
  done
  pids=()
done

pct() { # KIND VALUES...
  local kind=$1 v; shift
  [ $# -eq 0 ] && return
  if [ -n "$stalls_file" ]; then for v in "$@"; do echo "$kind $v" >>"$stalls_file"; done; fi
  python3 - "$kind" "$@" <<'EOF' >&2
import sys
kind, v = sys.argv[1], sorted(int(x) for x in sys.argv[2:])
p = lambda q: v[min(len(v) - 1, int(q * len(v)))]
print(f"failover: {kind} stall ms: p50 {p(0.5)}, p99 {p(0.99)}, max {v[-1]} ({len(v)} rounds)")
EOF
}
pct kill ${stalls_kill[@]+"${stalls_kill[@]}"}
pct freeze ${stalls_freeze[@]+"${stalls_freeze[@]}"}
pct elective ${stalls_elective[@]+"${stalls_elective[@]}"}
pct giveback ${stalls_giveback[@]+"${stalls_giveback[@]}"}
echo "kills $kills_done, freezes $freezes_done, elective $elective_done, givebacks $givebacks_done, requests $requests, lost $lost, duplicated $dup, client errors $errors"
[ "$lost" = 0 ] && [ "$dup" = 0 ] && [ "$errors" = 0 ]
