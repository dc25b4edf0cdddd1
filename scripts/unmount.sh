#!/usr/bin/env bash
# How long unmount takes after a walk of N paths: `commitfs unmount` (returns
# once the mount is detached) against `umount` of the same mount walked the
# same way (waits for the kernel to drop every inode it cached), and the
# time until the daemon has exited, in one run. Needs root (umount).
#
# Usage: scripts/unmount.sh [N]      (default 1000000; 5 trees of N/5 files)
# Environment: COMMITFS_BIN (else `cargo build --release`)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "unmount.sh: needs root (umount)" >&2; exit 1; }
N=${1:-1000000}
if [[ -n ${COMMITFS_BIN:-} ]]; then BIN=$COMMITFS_BIN; else cargo build --release --quiet; BIN=$PWD/target/release/commitfs; fi
WORK=$(mktemp -d /var/tmp/commitfs-unmount.XXXXXX)
DAEMON=
cleanup() {
    if [[ -n $DAEMON ]]; then umount "$WORK/mnt" 2>/dev/null || true; wait "$DAEMON" 2>/dev/null || true; fi
    rm -rf -- "$WORK"
}
trap cleanup EXIT
R=$WORK/r.git
git init -q --bare "$R"
python3 - "$((N / 5))" <<'PY' | git --git-dir="$R" fast-import --quiet
import sys
n = int(sys.argv[1]); w = sys.stdout.write
w("blob\nmark :1\ndata 5\nsame\n")
w("commit refs/heads/main\nmark :2\ncommitter m <m@x> 1700000000 +0000\ndata 5\nbase\n")
for i in range(n):
    w("M 100644 :1 d%04d/f%06d.txt\n" % (i // 1000, i))
w("\n")
for t in range(5):
    w("blob\nmark :%d\ndata 2\n%d\n\n" % (10 + t, t))
    w("commit refs/heads/main\nmark :%d\ncommitter m <m@x> %d +0000\ndata 2\nt\n" % (100 + t, 1700000001 + t))
    w("from :%d\n" % (2 if t == 0 else 100 + t - 1))
    w("M 100644 :%d t%d/own.txt\n\n" % (10 + t, t))
    w("reset refs/tags/t%d\nfrom :%d\n\n" % (t, 100 + t))
PY
now() { date +%s.%N; }
secs() { awk -v a="$2" -v b="$1" 'BEGIN { printf "%.3f", a - b }'; }
mkdir -p "$WORK/mnt"
printf '%-22s %10s %14s %16s\n' "unmount with" "paths" "returned in" "daemon gone in"
for how in "commitfs unmount" "umount"; do
    "$BIN" mount "$R" "$WORK/mnt" --foreground >>"$WORK/log" 2>&1 &
    DAEMON=$!
    for _ in $(seq 200); do mountpoint -q "$WORK/mnt" && break; sleep 0.05; done
    paths=0
    for t in 0 1 2 3 4; do paths=$((paths + $(find "$WORK/mnt/.tags/t$t" | wc -l))); done
    t0=$(now)
    if [[ $how == umount ]]; then umount "$WORK/mnt"; else "$BIN" unmount "$WORK/mnt"; fi
    t1=$(now)
    wait "$DAEMON" || true
    t2=$(now)
    DAEMON=
    printf '%-22s %10s %12s s %14s s\n' "$how" "$paths" "$(secs "$t0" "$t1")" "$(secs "$t0" "$t2")"
    # The kernel's teardown of the first mount ends before the next one.
    while pgrep -f "commitfs unmount $WORK/mnt" >/dev/null; do sleep 0.1; done
done
