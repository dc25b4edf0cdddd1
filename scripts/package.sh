#!/usr/bin/env bash
# Builds the Debian package of commitfs (cargo-deb): the binary, its man
# pages and completions, the systemd user service, the example units.
#
#   scripts/package.sh [OUTDIR]      (default target/debian)
#
# COMMITFS_BIN packages a binary built already instead of building a
# release one. Installs cargo-deb first if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/debian}
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --version 3.8.0 >&2
bin=${COMMITFS_BIN:-}
strip=()
if [[ -z $bin ]]; then
    cargo build --release --locked >&2
    bin=target/release/commitfs
else
    # A binary built elsewhere (a debug build, in the tests) is packaged as
    # it is, quickly compressed.
    strip=(--no-strip --fast)
fi
rm -rf target/deb-root
mkdir -p target "$out"
DESTDIR=target/deb-root COMMITFS_BIN="$bin" scripts/install.sh /usr
cargo deb --no-build "${strip[@]}" --output "$out" >&2
