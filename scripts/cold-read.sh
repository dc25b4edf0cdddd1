#!/usr/bin/env bash
# A cold read of every file of an N-file tree through a fresh mount (tar of
# the branch into tmpfs) against `git archive | tar x` of the same tree, in
# the same run, each after dropping the page cache, with the CPU time each
# side spent and the floor that leaves (see below). Needs root (drop_caches).
#
# Usage: scripts/cold-read.sh [N...]      (default: 20000 100000)
# Environment: COMMITFS_BIN (else `cargo build --release`); COLD_ROUNDS
# (default 3): rounds per size, each a fresh mount and both reads cold, and
# the median ratio of them (the VM's speed varies from run to run).
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
# CPU seconds of each side, and the floor: the ratio a daemon that spent no
# CPU of its own in user space would reach, were its kernel time, tar c's and
# tar x's spread perfectly over the machine's cores.
NCPU=$(nproc)
ROUNDS=${COLD_ROUNDS:-3}
ticks=$(getconf CLK_TCK)
# utime and stime of a process (all its threads), in seconds.
proc_cpu() { awk -v t="$ticks" '{ sub(/.*\) /, ""); printf "%.3f %.3f\n", $12 / t, $13 / t }' "/proc/$1/stat"; }
cpu_of() { awk '{ printf "%.3f", $1 + $2 }' "$1"; }
printf '%-8s %10s %10s %7s   %-44s %-24s %7s\n' files commitfs "git arch." ratio \
    "commitfs CPU-s: tar c, tar x, daemon usr+sys" "git CPU-s: archive, tar x" floor
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
        ratios=()
        for ((round = 1; round <= ROUNDS; round++)); do
            rm -rf "${OUT:?}"/*; sync; echo 3 > /proc/sys/vm/drop_caches
            t0=$(date +%s.%N)
            /usr/bin/time -f '%U %S' -o "$WORK/g1" git --git-dir="$R" archive main |
                /usr/bin/time -f '%U %S' -o "$WORK/g2" tar x -C "$OUT"
            t1=$(date +%s.%N)
            rm -rf "${OUT:?}"/*; sync; echo 3 > /proc/sys/vm/drop_caches
            mkdir -p "$WORK/mnt"
            "$BIN" mount "$R" "$WORK/mnt" --foreground >>"$WORK/log" 2>&1 &
            DAEMON=$!
            for _ in $(seq 200); do mountpoint -q "$WORK/mnt" && break; sleep 0.05; done
            read -r du0 ds0 < <(proc_cpu "$DAEMON")
            t2=$(date +%s.%N)
            /usr/bin/time -f '%U %S' -o "$WORK/c1" tar cf - -C "$WORK/mnt" main |
                /usr/bin/time -f '%U %S' -o "$WORK/c2" tar x -C "$OUT"
            t3=$(date +%s.%N)
            read -r du1 ds1 < <(proc_cpu "$DAEMON")
            "$BIN" unmount "$WORK/mnt"; wait "$DAEMON" || true; DAEMON=
            g=$(secs "$t0" "$t1"); c=$(secs "$t2" "$t3")
            tc=$(cpu_of "$WORK/c1"); tx=$(cpu_of "$WORK/c2"); du=$(secs "$du0" "$du1"); ds=$(secs "$ds0" "$ds1")
            ga=$(cpu_of "$WORK/g1"); gx=$(cpu_of "$WORK/g2")
            ratio=$(awk -v a="$c" -v b="$g" 'BEGIN { printf "%.2f", a / b }')
            printf '%-8s %8s s %8s s %6sx   %-44s %-24s %6sx\n' "$n" "$c" "$g" "$ratio" \
                "$tc, $tx, $du+$ds" "$ga, $gx" \
                "$(awk -v a="$tc" -v b="$tx" -v d="$ds" -v g="$g" -v n="$NCPU" 'BEGIN { printf "%.2f", (a + b + d) / n / g }')"
            ratios+=("$ratio")
            rm -rf "${OUT:?}"/*
        done
        if ((ROUNDS > 1)); then
            printf '%-8s median ratio of %d rounds: %sx\n' "$n" "$ROUNDS" \
                "$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
        fi
        rm -rf "$R"
    done
done
