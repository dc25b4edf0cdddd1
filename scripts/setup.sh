#!/usr/bin/env bash
# Installs what commitfs needs to build and mount on a Debian machine, if missing:
# fuse3 (fusermount3, mount.fuse3), git, a C compiler (libgit2 and libssh2 are
# built from vendored source; OpenSSL's headers for https and ssh), diffutils and util-linux (the tests use cmp, diff, mount,
# unshare, fincore, setpriv). Sourced by demo.sh and test.sh.
set -euo pipefail

missing=()
command -v fusermount3 >/dev/null || missing+=(fuse3)
command -v git >/dev/null || missing+=(git)
command -v cc >/dev/null || missing+=(gcc libc6-dev)
command -v make >/dev/null || missing+=(make)
command -v cmp >/dev/null || missing+=(diffutils)
command -v unshare >/dev/null || missing+=(util-linux)
command -v fincore >/dev/null || missing+=(util-linux-extra)
command -v setpriv >/dev/null || missing+=(util-linux)
command -v mount >/dev/null || missing+=(mount)
command -v tar >/dev/null || missing+=(tar)
command -v pkg-config >/dev/null || missing+=(pkg-config)
# libgit2's https and ssh transports (git2 features https, ssh) link OpenSSL.
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
# Real editors and copy tools, driven by the write tests as people use them.
command -v vim >/dev/null || missing+=(vim)
command -v nano >/dev/null || missing+=(nano)
command -v emacs >/dev/null || missing+=(emacs-nox)
command -v tmux >/dev/null || missing+=(tmux)
command -v rsync >/dev/null || missing+=(rsync)
command -v zip >/dev/null || missing+=(zip)
command -v unzip >/dev/null || missing+=(unzip)
# The times test imports a module with python3; bench.sh times its sqlite3.
command -v python3 >/dev/null || missing+=(python3)
# The install test checks the units with systemd-analyze and the pages with man.
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v man >/dev/null || missing+=(man-db)
# A small web server for the smart-HTTP sync test (git http-backend behind it).
command -v lighttpd >/dev/null || [[ -x /usr/sbin/lighttpd ]] || missing+=(lighttpd)
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "commitfs setup: missing ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
    echo "==> apt-get install ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
    [[ -f "$HOME/.cargo/env" ]] && . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || {
    echo "commitfs setup: cargo is missing: install Rust with rustup (https://rustup.rs)" >&2
    exit 1
}
if [[ ! -e /dev/fuse ]]; then
    modprobe fuse 2>/dev/null || true
fi
[[ -e /dev/fuse ]] || {
    echo "commitfs setup: /dev/fuse is missing: load the fuse module (modprobe fuse)" >&2
    exit 1
}
