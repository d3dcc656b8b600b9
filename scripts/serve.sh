#!/usr/bin/env bash
# The run command: `sudo scripts/serve.sh [sandbar serve flags]`.
# Installs the optional host packages (slirp4netns for sandbox outbound network), builds the
# release binary and runs the server in the foreground. Flags and SANDBAR_* variables are passed
# through, e.g. `sudo scripts/serve.sh --listen 0.0.0.0:3000 --data-dir /var/lib/sandbar`.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "$(id -u)" -ne 0 ]; then
    echo "sandbar serve needs root (namespaces, cgroups, mounts). Run: sudo $0 $*" >&2
    exit 2
fi
if ! command -v cargo >/dev/null 2>&1; then
    for home in /root "$(getent passwd "${SUDO_USER:-root}" | cut -d: -f6)"; do
        [ -x "$home/.cargo/bin/cargo" ] && export PATH="$home/.cargo/bin:$PATH" && break
    done
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust with rustup (rust-toolchain.toml pins the version)" >&2; exit 2; }
if ! command -v slirp4netns >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "installing slirp4netns (outbound network for sandboxes)…" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slirp4netns) >&2 \
        || echo "slirp4netns could not be installed: sandboxes will have loopback only" >&2
fi
cd "$REPO"
cargo build --release -p sandbar >&2
exec "$REPO/target/x86_64-unknown-linux-gnu/release/sandbar" serve "$@"
