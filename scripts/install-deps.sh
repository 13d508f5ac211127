#!/usr/bin/env bash
# install-deps.sh: install what the test suite needs, only what is missing.
# Idempotent and non-interactive; run as root on Debian/Ubuntu.
#
#   - samba (smbd), smbclient, samba-testsuite (smbtorture): apt-get
#   - python3 with the smbprotocol module (testdata/raw_open.py): apt/pip
#   - a Rust toolchain (rustup, minimal profile) if cargo is missing
#   - cargo-nextest: `cargo install cargo-nextest --locked` if missing
set -euo pipefail

say() { echo "install-deps: $*" >&2; }
export DEBIAN_FRONTEND=noninteractive

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null && SUDO="sudo -n" || say "not root and no sudo: apt-get may fail"
fi

# --- Debian packages -------------------------------------------------------
need_pkgs=()
command -v smbd >/dev/null       || need_pkgs+=(samba)
command -v smbclient >/dev/null  || need_pkgs+=(smbclient)
command -v smbtorture >/dev/null || need_pkgs+=(samba-testsuite)
command -v python3 >/dev/null    || need_pkgs+=(python3)
command -v setsid >/dev/null     || need_pkgs+=(util-linux)
command -v sha256sum >/dev/null  || need_pkgs+=(coreutils)
command -v curl >/dev/null       || need_pkgs+=(curl ca-certificates)
command -v cc >/dev/null         || need_pkgs+=(build-essential)
if ! python3 -c 'import smbprotocol' 2>/dev/null && ! python3 -m pip --version >/dev/null 2>&1; then
  need_pkgs+=(python3-pip)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  say "apt-get install ${need_pkgs[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
else
  say "samba, smbclient, smbtorture present"
fi

# --- Python modules --------------------------------------------------------
if ! python3 -c 'import smbprotocol' 2>/dev/null; then
  say "pip install smbprotocol"
  python3 -m pip install -q smbprotocol 2>/dev/null \
    || python3 -m pip install -q --break-system-packages smbprotocol \
    || { $SUDO apt-get install -y -qq python3-smbprotocol >/dev/null 2>&1; } \
    || say "WARNING: could not install smbprotocol (raw_dotdot_paths_refused will fail)"
fi

# --- Rust and cargo-nextest ------------------------------------------------
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null; then
  say "installing Rust with rustup"
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  say "cargo install cargo-nextest --locked"
  cargo install cargo-nextest --locked
fi
say "ok: $(smbd --version), $(cargo nextest --version 2>/dev/null | head -1)"
