#!/usr/bin/env bash
# A cold read of every file of an N-file tree through a fresh mount (tar of
# the branch into tmpfs) against `git archive | tar x` of the same tree, in
# the same run, each after dropping the page cache. Needs root (drop_caches).
#
# Usage: scripts/cold-read.sh [N...]      (default: 20000 100000)
# Environment: COMMITFS_BIN (else `cargo build --release`)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "cold-read.sh: needs root (drop_caches)" >&2; exit 1; }
if [[ -n ${COMMITFS_BIN:-} ]]; then BIN=$COMMITFS_BIN; else cargo build --release --quiet; BIN=$PWD/target/release/commitfs; fi
WORK=$(mktemp -d /var/tmp/commitfs-cold.XXXXXX)
OUT=$(mktemp -d /dev/shm/commitfs-cold.XXXXXX)
DAEMON=
cleanup() {
    if [[ -n $DAEMON ]]; then "$BIN" unmount "$WORK/mnt" 2>/dev/null || fusermount3 -u "$WORK/mnt" 2>/dev/null || true; wait "$DAEMON" 2>/dev/null || true; fi
    rm -rf -- "$WORK" "$OUT"
}
trap cleanup EXIT
secs() { awk -v a="$2" -v b="$1" 'BEGIN { printf "%.3f", a - b }'; }
printf '%-10s %12s %22s %8s\n' files commitfs "git archive | tar x" ratio
for N in "${@:-20000 100000}"; do
    for n in $N; do
        R=$WORK/r$n.git
        git init -q --bare "$R"
        # n distinct small blobs (1 to 40 lines), 1000 per directory, packed.
        python3 - "$n" <<'PY' | git --git-dir="$R" fast-import --quiet
import sys
n = int(sys.argv[1]); w = sys.stdout.write
for i in range(n):
    body = (b"file %d\n" % i) * (1 + i % 40)
    w("blob\nmark :%d\ndata %d\n" % (i + 1, len(body))); sys.stdout.flush()
    sys.stdout.buffer.write(body); sys.stdout.buffer.flush(); w("\n")
w("commit refs/heads/main\ncommitter m <m@x> 1700000000 +0000\ndata 2\nc\n")
for i in range(n):
    w("M 100644 :%d d%03d/s%02d/f%06d.txt\n" % (i + 1, i // 1000, (i // 100) % 10, i))
w("\n")
PY
        git --git-dir="$R" repack -adq
        rm -rf "${OUT:?}"/*; sync; echo 3 > /proc/sys/vm/drop_caches
        t0=$(date +%s.%N); git --git-dir="$R" archive main | tar x -C "$OUT"; t1=$(date +%s.%N)
        rm -rf "${OUT:?}"/*; sync; echo 3 > /proc/sys/vm/drop_caches
        mkdir -p "$WORK/mnt"
        "$BIN" mount "$R" "$WORK/mnt" --foreground >>"$WORK/log" 2>&1 &
        DAEMON=$!
        for _ in $(seq 200); do mountpoint -q "$WORK/mnt" && break; sleep 0.05; done
        t2=$(date +%s.%N); tar cf - -C "$WORK/mnt" main | tar x -C "$OUT"; t3=$(date +%s.%N)
        "$BIN" unmount "$WORK/mnt"; wait "$DAEMON" || true; DAEMON=
        g=$(secs "$t0" "$t1"); c=$(secs "$t2" "$t3")
        printf '%-10s %10s s %20s s %7sx\n' "$n" "$c" "$g" "$(awk -v a="$c" -v b="$g" 'BEGIN { printf "%.2f", a / b }')"
        rm -rf "$R" "${OUT:?}"/*
    done
done
