#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then runs every test.
# Mount tests mount for real through the kernel (FUSE needs root or a user
# allowed to use /dev/fuse; the mount(8)/fstab and /dev/fuse tests need root).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
# The package test builds a Debian package with cargo-deb.
if ! command -v cargo-deb >/dev/null; then
    echo "==> cargo install cargo-deb" >&2
    cargo install cargo-deb --locked --version 3.8.0 2>&1
fi
echo "==> cargo test" >&2
cargo test --all-targets --locked 2>&1
