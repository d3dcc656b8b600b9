#!/usr/bin/env bash
# Installs everything scripts/test.sh needs besides the Rust toolchain:
#   - Debian packages (only the missing ones, so a rerun does not touch apt at all);
#   - the Python virtualenv <repo>/.venv with the pinned packages of tests/e2e/requirements.txt
#     (skipped when .venv already holds exactly those pins).
# Runs as root on Debian/Ubuntu, non-interactively (CI has no stdin).
#
# Environment:
#   SANDBAR_VENV    where to create the virtualenv (default: <repo>/.venv)
#   SANDBAR_PYTHON  interpreter used to create it (default: first of /usr/bin/python3, python3
#                   on PATH whose `-m venv` works)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SANDBAR_VENV:-$REPO/.venv}"
REQUIREMENTS="$REPO/tests/e2e/requirements.txt"
STAMP="$VENV/.sandbar-requirements"

log() { printf '[install-test-deps] %s\n' "$*"; }
die() { printf '[install-test-deps] error: %s\n' "$*" >&2; exit 1; }

[ "$(uname -s)" = Linux ] || die "Sandbar's tests need Linux (this is $(uname -s))."
[ "$(id -u)" -eq 0 ] || die "run as root (e.g. sudo $0): apt-get and the sandboxes need it."

# ---------------------------------------------------------------------------------------------
# Debian packages.
#   python3, python3-venv   the interpreter the sandboxes see (/usr/bin/python3) and the venv
#   slirp4netns             user-space networking for sandboxes that are not network_block_all
#   busybox-static          the busybox-only snapshot test
#   git                     git toolbox operations
#   litmus                  WebDAV compliance suite
#   rclone                  WebDAV client for the volume copy/sync round trip
#   e2fsprogs, util-linux   mkfs.ext4, losetup and mount: the server's volume images
#   gcc, libc6-dev          linker and static libc for `cargo build` (crt-static)
#   ca-certificates         pip over HTTPS on a minimal image
#   bubblewrap, runc        baselines of `sandbar bench` (start latency of a namespaced shell)
# ---------------------------------------------------------------------------------------------
PACKAGES=(python3 python3-venv slirp4netns busybox-static git litmus rclone e2fsprogs util-linux gcc libc6-dev ca-certificates
    bubblewrap runc)

is_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: only Debian-based hosts are supported."
missing=()
for pkg in "${PACKAGES[@]}"; do
    is_installed "$pkg" || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
    log "Debian packages: all present (${PACKAGES[*]})"
else
    log "Debian packages: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
fi

# ---------------------------------------------------------------------------------------------
# Python virtualenv.
# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
# TypeScript SDK for the conformance suite (tests/e2e/ts, pinned by its package-lock.json).
# Skipped without node/npm: the TypeScript test then skips itself.
# ---------------------------------------------------------------------------------------------
install_ts_sdk() {
    local dir="$REPO/tests/e2e/ts"
    if ! command -v npm >/dev/null 2>&1; then
        log "npm not found: skipping the TypeScript SDK (tests/e2e/ts)"
    elif [ -d "$dir/node_modules/@daytonaio/sdk" ] && [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
        log "TypeScript SDK: up to date in $dir/node_modules"
    else
        log "TypeScript SDK: npm ci in $dir"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    fi
}

install_ts_sdk

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' 2>/dev/null \
    && [ -f "$STAMP" ] && cmp -s "$STAMP" "$REQUIREMENTS"; then
    log "virtualenv $VENV: up to date with tests/e2e/requirements.txt"
    exit 0
fi

pick_python() {
    local candidates=()
    [ -n "${SANDBAR_PYTHON:-}" ] && candidates+=("$SANDBAR_PYTHON")
    candidates+=(/usr/bin/python3)
    command -v python3 >/dev/null 2>&1 && candidates+=("$(command -v python3)")
    local py probe
    probe="$(mktemp -d)"
    for py in "${candidates[@]}"; do
        [ -x "$py" ] || continue
        if "$py" -m venv "$probe/v" >/dev/null 2>&1 && [ -x "$probe/v/bin/pip" ]; then
            rm -rf "$probe"
            echo "$py"
            return 0
        fi
        rm -rf "$probe/v"
    done
    rm -rf "$probe"
    return 1
}

PY="$(pick_python)" || die "no python3 with a working 'venv' module (is python3-venv installed?)"
log "virtualenv $VENV: creating with $PY ($("$PY" --version 2>&1))"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$REQUIREMENTS"
cp "$REQUIREMENTS" "$STAMP"
log "virtualenv $VENV: installed $("$VENV/bin/python" -m pip freeze --disable-pip-version-check \
    | grep -iE '^(daytona|pytest|pytest-timeout|httpx|prometheus[-_]client)==' | tr '\n' ' ')"
