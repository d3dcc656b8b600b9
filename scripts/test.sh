#!/usr/bin/env bash
# The test command: `sudo scripts/test.sh` (CI runs it as root with CI=true, no stdin, on a fresh
# clone). Stages, in order:
#   deps    Debian packages + <repo>/.venv            (scripts/install-test-deps.sh)
#   build   cargo build --workspace                   (target/x86_64-unknown-linux-gnu/debug/sandbar)
#   unit    cargo nextest run --workspace (+ doctests), or cargo test --workspace without nextest
#   clippy  cargo clippy --workspace --all-targets -- -D warnings
#   fmt     cargo fmt --all --check
#   e2e     pytest tests/e2e -v                        (real server, real sandboxes, real SDK)
#   bench   sandbar bench --quick                      (harness check only; figures never asserted)
# Every stage runs even when an earlier one failed (so one run shows every problem), except that
# `unit` and `e2e` need a successful `build`. The exit status is non-zero if any stage failed.
#
# Usage: scripts/test.sh [STAGE...] [-- PYTEST_ARGS...]
#   scripts/test.sh                       all stages
#   scripts/test.sh build e2e -- -k tenancy -x
# Environment: PYTEST_ARGS (extra pytest arguments), SANDBAR_BIN (binary the e2e suite starts),
#   SANDBAR_EXE (binary the Rust integration tests start), CARGO_TARGET_DIR,
#   SANDBAR_E2E_KEEP=1 (keep the e2e data directories for debugging).
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

ALL_STAGES=(deps build unit clippy fmt e2e bench)
stages=()
pytest_extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --) shift; pytest_extra=("$@"); break ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        deps|build|unit|clippy|fmt|e2e|bench) stages+=("$1"); shift ;;
        *) echo "unknown stage '$1' (stages: ${ALL_STAGES[*]})" >&2; exit 2 ;;
    esac
done
[ "${#stages[@]}" -eq 0 ] && stages=("${ALL_STAGES[@]}")
want() { local s; for s in "${stages[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

section() {
    printf '\n\033[1m==================== %s ====================\033[0m\n' "$*"
}
failed=()
passed=()
skipped=()
record() { # record STAGE STATUS
    if [ "$2" -eq 0 ]; then passed+=("$1"); else failed+=("$1"); fi
}

# ---------------------------------------------------------------------------------------------
section "preflight"
if [ "$(uname -s)" != Linux ]; then
    echo "Sandbar's tests need Linux (namespaces, cgroups, overlayfs); this is $(uname -s)." >&2
    exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh must run as root: the end-to-end tests create real sandboxes" >&2
    echo "(namespaces, cgroups, mounts) and dependencies are installed with apt-get." >&2
    echo "Run:  sudo $0 $*" >&2
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-always}"

# sudo resets PATH (secure_path), which usually hides rustup's ~/.cargo/bin. Look for cargo in
# root's and in the invoking user's home, and use that user's rustup state when it is theirs.
if ! command -v cargo >/dev/null 2>&1; then
    for home in "${HOME:-/root}" /root "$(getent passwd "${SUDO_USER:-root}" | cut -d: -f6)"; do
        if [ -n "$home" ] && [ -x "$home/.cargo/bin/cargo" ]; then
            export PATH="$home/.cargo/bin:$PATH"
            [ -z "${RUSTUP_HOME:-}" ] && [ -d "$home/.rustup" ] && export RUSTUP_HOME="$home/.rustup"
            [ -z "${CARGO_HOME:-}" ] && export CARGO_HOME="$home/.cargo"
            break
        fi
    done
fi
if command -v cargo >/dev/null 2>&1; then
    echo "cargo:  $(command -v cargo) ($(cargo --version 2>&1))"
else
    echo "cargo not found (install Rust with rustup: https://rustup.rs; rust-toolchain.toml pins the version)." >&2
    exit 2
fi
echo "kernel: $(uname -r)   user: $(id -un)   CI: ${CI:-false}   stages: ${stages[*]}"

# ---------------------------------------------------------------------------------------------
if want deps; then
    section "deps: Debian packages and Python virtualenv"
    "$REPO/scripts/install-test-deps.sh" </dev/null
    st=$?
    record deps "$st"
    if [ "$st" -ne 0 ]; then
        echo "dependency installation failed; stopping here." >&2
        section "summary"
        echo "FAILED: deps"
        exit 1
    fi
fi

# The binary the Rust integration tests (SANDBAR_EXE) and the e2e suite (SANDBAR_BIN) start.
BIN="${CARGO_TARGET_DIR:-$REPO/target}/x86_64-unknown-linux-gnu/debug/sandbar"
export SANDBAR_EXE="${SANDBAR_EXE:-$BIN}"

# ---------------------------------------------------------------------------------------------
build_ok=1
if want build; then
    section "build: cargo build --workspace"
    cargo build --workspace </dev/null
    st=$?
    record build "$st"
    [ "$st" -eq 0 ] || build_ok=0
fi

# ---------------------------------------------------------------------------------------------
if want unit; then
    section "unit: Rust tests"
    if [ "$build_ok" -ne 1 ]; then
        echo "skipped: the build failed"
        skipped+=(unit)
    elif cargo nextest --version >/dev/null 2>&1; then
        echo "+ cargo nextest run --workspace"
        cargo nextest run --workspace --no-tests=pass </dev/null
        st=$?
        # nextest does not run doctests.
        echo "+ cargo test --workspace --doc"
        cargo test --workspace --doc </dev/null
        st2=$?
        record unit $((st || st2))
    else
        echo "+ cargo test --workspace"
        cargo test --workspace </dev/null
        record unit $?
    fi
fi

# ---------------------------------------------------------------------------------------------
if want clippy; then
    section "clippy: cargo clippy --workspace --all-targets -- -D warnings"
    cargo clippy --workspace --all-targets -- -D warnings </dev/null
    record clippy $?
fi

# ---------------------------------------------------------------------------------------------
if want fmt; then
    section "fmt: cargo fmt --check"
    cargo fmt --all --check </dev/null
    record fmt $?
fi

# ---------------------------------------------------------------------------------------------
if want e2e; then
    section "e2e: pytest tests/e2e (real server, real sandboxes, daytona SDK 0.226.1)"
    export SANDBAR_BIN="${SANDBAR_BIN:-$BIN}"
    if [ "$build_ok" -ne 1 ]; then
        echo "skipped: the build failed"
        skipped+=(e2e)
    elif [ ! -x "$REPO/.venv/bin/python" ]; then
        echo "no virtualenv at $REPO/.venv: run the 'deps' stage (scripts/install-test-deps.sh)" >&2
        record e2e 1
    elif [ ! -x "$SANDBAR_BIN" ]; then
        echo "no sandbar binary at $SANDBAR_BIN: run the 'build' stage" >&2
        record e2e 1
    else
        # shellcheck disable=SC2086  # PYTEST_ARGS is a word list on purpose
        "$REPO/.venv/bin/python" -m pytest "$REPO/tests/e2e" -v ${PYTEST_ARGS:-} \
            "${pytest_extra[@]}" </dev/null
        record e2e $?
    fi
fi

# ---------------------------------------------------------------------------------------------
if want bench; then
    section "bench: sandbar bench --quick (every phase, tiny sizes; fails only if the harness does)"
    bench_bin="${SANDBAR_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/x86_64-unknown-linux-gnu/debug/sandbar}"
    if [ "$build_ok" -ne 1 ]; then
        echo "skipped: the build failed"
        record bench 1
    elif [ ! -x "$bench_bin" ]; then
        echo "no sandbar binary at $bench_bin: run the 'build' stage" >&2
        record bench 1
    else
        bench_out="$(mktemp -d)"
        "$bench_bin" bench --quick --out "$bench_out" </dev/null
        st=$?
        record bench "$st"
        if [ "$st" -eq 0 ]; then rm -rf "$bench_out"; else echo "bench output kept in $bench_out"; fi
    fi
fi

# ---------------------------------------------------------------------------------------------
section "summary"
[ "${#passed[@]}" -gt 0 ] && echo "passed: ${passed[*]}"
[ "${#skipped[@]}" -gt 0 ] && echo "skipped (the build failed): ${skipped[*]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all stages passed"
