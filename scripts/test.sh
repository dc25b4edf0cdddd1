#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then runs every test.
# Mount tests mount for real through the kernel (FUSE needs root or a user
# allowed to use /dev/fuse; the mount(8)/fstab and /dev/fuse tests need root).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
echo "==> cargo test" >&2
cargo test --all-targets --locked 2>&1
