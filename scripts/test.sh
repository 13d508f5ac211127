#!/usr/bin/env bash
# test.sh: the project's one test command (CI runs it via .ci/run).
#
#   1. scripts/install-deps.sh (samba, smbclient, smbtorture, nextest, ...)
#   2. cargo build --release -p server --bin duet; DUET_BIN points at it, so
#      the integration tests run the optimised server
#   3. cargo nextest run --workspace --profile ci (see .config/nextest.toml);
#      its summary is the last thing printed, its status is ours.
#
# Extra arguments go to nextest, e.g. `scripts/test.sh -E 'binary(smbclient)'`.
# DUET_TEST_SERVER=smbd runs the integration tests against Samba instead.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi

echo "test.sh: building the release duet binary" >&2
cargo build --release -p server --bin duet
target_dir=$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export DUET_BIN="$target_dir/release/duet"
[ -x "$DUET_BIN" ] || { echo "test.sh: $DUET_BIN missing after build" >&2; exit 1; }

exec cargo nextest run --workspace --profile ci --no-tests=warn "$@"
