# Shared helpers for scripts/torture.sh and scripts/bench.sh (sourced, not run).
#
# Starts the servers under test on loopback ports:
#   start_duet NAME DIR      duet (DUET_BIN) serving DIR/share as `share`,
#                            user duet:duetpass; with DUET_TEST_SERVER=smbd
#                            (or BENCH_DUET=smbd) a second smbd stands in.
#   start_smbd NAME DIR      Samba's smbd via ../shared/tools/ref-smbd.
# Each sets ${NAME}_PORT and ${NAME}_PID; stop_all stops everything started.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REF_SMBD=${REF_SMBD:-$repo/../shared/tools/ref-smbd}
TORTURE_SCORE=${TORTURE_SCORE:-$repo/../shared/tools/torture-score}
DUET_USER=duet
DUET_PASS=duetpass

_started_duet_pids=()
_started_smbd_dirs=()

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Path of the release duet binary: $DUET_BIN, else build it.
duet_bin() {
  if [ -n "${DUET_BIN:-}" ]; then echo "$DUET_BIN"; return; fi
  local target
  target=$(cd "$repo" && cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  (cd "$repo" && nice cargo build --release -q -p server --bin duet) >&2
  echo "$target/release/duet"
}

# start_duet NAME DIR [extra duet args...]
start_duet() {
  local name=$1 dir=$2; shift 2
  if [ "${DUET_TEST_SERVER:-duet}" = smbd ]; then
    log "$name: DUET_TEST_SERVER=smbd, starting smbd in duet's place"
    start_smbd "$name" "$dir"
    return
  fi
  local bin port pid
  bin=$(duet_bin)
  mkdir -p "$dir/share"
  chmod 755 "$dir"; chmod 777 "$dir/share"
  port=$(free_port)
  (cd "$dir" && exec "$bin" serve --listen "127.0.0.1:$port" --share "share=$dir/share" \
      --user "$DUET_USER:$DUET_PASS" --log-level "${DUET_LOG_LEVEL:-warn}" "$@" \
      </dev/null >"$dir/duet.stdout" 2>"$dir/duet.log") &
  pid=$!
  _started_duet_pids+=("$pid")
  printf -v "${name}_PORT" %s "$port"
  printf -v "${name}_PID" %s "$pid"
  local i
  for i in $(seq 300); do
    if grep -q "duet: listening" "$dir/duet.log" 2>/dev/null || port_open "$port"; then
      log "$name: duet pid $pid listening on 127.0.0.1:$port"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name: duet exited before listening; its log:"
      tail -20 "$dir/duet.log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  log "$name: duet did not listen on 127.0.0.1:$port within 30 s; its log:"
  tail -20 "$dir/duet.log" >&2 || true
  return 1
}

# start_smbd NAME DIR [--option 'k = v'...]
start_smbd() {
  local name=$1 dir=$2; shift 2
  local port pid try
  mkdir -p "$dir/share"
  chmod 755 "$dir"
  for try in 1 2 3; do
    port=$(free_port)
    # setsid: smbd signals its whole process group when it stops, which
    # must not be ours.
    if pid=$(setsid -w bash "$REF_SMBD" start --dir "$dir/state" --listen "127.0.0.1:$port" \
               --share "share=$dir/share" --user "$DUET_USER:$DUET_PASS" "$@"); then
      _started_smbd_dirs+=("$dir/state")
      printf -v "${name}_PORT" %s "$port"
      printf -v "${name}_PID" %s "$pid"
      log "$name: smbd pid $pid listening on 127.0.0.1:$port"
      return 0
    fi
    log "$name: ref-smbd start failed (try $try)"
  done
  return 1
}

stop_all() {
  local pid d i
  for pid in ${_started_duet_pids[@]+"${_started_duet_pids[@]}"}; do
    kill -TERM "$pid" 2>/dev/null || continue
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  _started_duet_pids=()
  for d in ${_started_smbd_dirs[@]+"${_started_smbd_dirs[@]}"}; do
    setsid -w bash "$REF_SMBD" stop --dir "$d" || true
  done
  _started_smbd_dirs=()
}
