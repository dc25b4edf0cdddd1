#!/usr/bin/env bash
# The daemon's real memory (RSS from /proc) under walks, many writers and
# tags read one after another, against what docs/SEMANTICS.md ("Memory")
# promises, and against the git command line doing the same reading
# (`git ls-tree -r`, peak RSS from /proc) in the same run.
#
# Usage: scripts/memory.sh
#
# Environment:
#   COMMITFS_BIN   use this binary instead of `cargo build --release`
#   MEM_FILES      files in the walked tree, 1000 per directory (default 200000)
#   MEM_WRITERS    writer threads, each in its own directory   (default 8)
#   MEM_TAGS       tags of distinct trees read one after another (default 30)
#   MEM_CACHE      --cache-size for the mounts                (default 32M)
#   MEM_STRESS     processes x operations of scripts/fsstress.py (xfstests'
#                  fsstress's mix; Debian does not package it) (default 8x5000)
#   MEM_WALKS      tags walked whole one after another, the kernel made to
#                  forget each walk (root only)               (default 10)
#   MEM_BIG        large files (4 MiB of random bytes each) read by as many
#                  threads at once                            (default 32)
set -euo pipefail
cd "$(dirname "$0")/.."

FILES=${MEM_FILES:-200000}
WRITERS=${MEM_WRITERS:-8}
TAGS=${MEM_TAGS:-30}
CACHE=${MEM_CACHE:-32M}
BIG=${MEM_BIG:-32}
WALKS=${MEM_WALKS:-10}
STRESS=${MEM_STRESS:-8x5000}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'memory.sh: %s\n' "$*" >&2; exit 1; }

if [[ -n ${COMMITFS_BIN:-} ]]; then
    BIN=$COMMITFS_BIN
else
    log "cargo build --release"
    cargo build --release --quiet
    BIN=$PWD/target/release/commitfs
fi
WORK=$(mktemp -d /var/tmp/commitfs-memory.XXXXXX)
MNT=$WORK/mnt
DAEMON=
cleanup() {
    if [[ -n $DAEMON ]] && kill -0 "$DAEMON" 2>/dev/null; then
        "$BIN" unmount "$MNT" >/dev/null 2>&1 || fusermount3 -u "$MNT" 2>/dev/null || true
        wait "$DAEMON" 2>/dev/null || true
    fi
    rm -rf -- "$WORK"
}
trap cleanup EXIT

kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
# "anon A MiB + file F MiB": the daemon's own memory, and the pages of files
# it maps (libgit2 maps packs) that are in memory, which the kernel can drop.
split() { printf 'anon %s + file %s MiB' "$(mib "$(kib "$DAEMON" RssAnon)")" "$(mib "$(kib "$DAEMON" RssFile)")"; }

# A tree of FILES small files, 1000 per directory, and TAGS commits that each
# change one file of their own directory (distinct trees), made with
# fast-import (seconds even for millions of files).
REPO=$WORK/repo.git
git init -q --bare "$REPO"
log "building $FILES files and $TAGS tags with git fast-import"
python3 - "$FILES" "$TAGS" "$BIG" <<'PY' | git --git-dir="$REPO" fast-import --quiet
import os, sys
files, tags, big = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
w = sys.stdout.write
w("blob\nmark :1\ndata 5\nsame\n")
for b in range(big):
    data = os.urandom(4 << 20)
    w("blob\nmark :%d\ndata %d\n" % (50000 + b, len(data)))
    sys.stdout.flush(); sys.stdout.buffer.write(data); sys.stdout.buffer.flush(); w("\n")
w("commit refs/heads/main\nmark :2\ncommitter m <m@x> 1700000000 +0000\ndata 5\nbase\n")
for i in range(files):
    w("M 100644 :1 d%04d/f%05d.txt\n" % (i // 1000, i))
for b in range(big):
    w("M 100644 :%d big/b%03d.bin\n" % (50000 + b, b))
w("\n")
for t in range(tags):
    body = b"tag %d\n" % t
    w("blob\nmark :%d\ndata %d\n" % (10 + t, len(body)))
    sys.stdout.flush(); sys.stdout.buffer.write(body); w("\n")
    w("commit refs/heads/main\nmark :%d\ncommitter m <m@x> %d +0000\ndata 2\nt\n" % (100000 + t, 1700000001 + t))
    w("from :%d\n" % (2 if t == 0 else 100000 + t - 1))
    w("M 100644 :%d t%03d/own.txt\n\n" % (10 + t, t))
    w("reset refs/tags/t%03d\nfrom :%d\n\n" % (t, 100000 + t))
PY

mount_it() {
    mkdir -p "$MNT"
    "$BIN" mount "$REPO" "$MNT" --foreground --cache-size "$CACHE" >>"$WORK/daemon.log" 2>&1 &
    DAEMON=$!
    for _ in $(seq 200); do mountpoint -q "$MNT" && return; sleep 0.05; done
    die "not mounted"
}
unmount_it() {
    local t0 t1
    t0=$(date +%s.%N)
    "$BIN" unmount "$MNT"
    wait "$DAEMON" || true
    t1=$(date +%s.%N)
    DAEMON=
    UNMOUNT_S=$(awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')
}
# Peak RSS of a git command, in KiB.
git_peak() {
    "$@" >/dev/null &
    local pid=$! peak=0 k
    while kill -0 "$pid" 2>/dev/null; do
        k=$(kib "$pid" VmHWM 2>/dev/null || echo 0)
        [[ -n $k && $k -gt $peak ]] && peak=$k
        sleep 0.02
    done
    wait "$pid"
    echo "$peak"
}

# The bound docs/SEMANTICS.md ("Memory") promises for the daemon's own
# (anonymous) memory when idle: 128 MiB + --cache-size + 300 bytes per path
# in memory (commitfs status). Prints "A of B MiB bound" or "OVER".
cache_bytes() { numfmt --from=iec "$CACHE"; }
bound() {
    local anon paths b
    anon=$(kib "$DAEMON" RssAnon)
    paths=$("$BIN" status --json "$MNT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["inodes"])')
    b=$(( (128 << 20) + $(cache_bytes) + 300 * paths ))
    awk -v a="$anon" -v b="$b" -v p="$paths" 'BEGIN {
        printf "anon %.1f of %.1f MiB bound (%d paths in memory)%s", a / 1024, b / 1048576, p, (a * 1024 > b ? " OVER" : "") }'
}

ROWS=()
row() { ROWS+=("$(printf '%-34s %12s %14s %s' "$1" "$2" "$3" "$4")"); }

log "mount, walk main twice (find -ls)"
mount_it
R0=$(kib "$DAEMON" VmRSS)
PATHS=$(find "$MNT/main" | wc -l)
R1=$(kib "$DAEMON" VmRSS)
find "$MNT/main" -ls >/dev/null
R2=$(kib "$DAEMON" VmRSS)
PER=$(awk -v a="$R1" -v b="$R0" -v n="$PATHS" 'BEGIN { printf "%.0f", (a - b) * 1024 / n }')
G_LS=$(git_peak git --git-dir="$REPO" ls-tree -r main)
row "RSS at mount" "$(mib "$R0") MiB" "-" ""
row "after walking $PATHS paths" "$(mib "$R1") MiB" "$PER B/path" "$(split); git ls-tree -r peak $(mib "$G_LS") MiB"
row "after walking them again" "$(mib "$R2") MiB" "+$(mib $((R2 - R1))) MiB" "$(bound)"

PREV=$R2
if [[ $(id -u) == 0 ]]; then
    # The kernel forgets the walk (as it does under memory pressure): the
    # daemon keeps only the places of forgotten paths.
    echo 2 > /proc/sys/vm/drop_caches
    sleep 1
    R25=$(kib "$DAEMON" VmRSS)
    row "after the kernel forgot them" "$(mib "$R25") MiB" "$(mib $((R25 - R0))) MiB over mount" "$(split); $(bound)"
    # Whole trees of distinct paths (each tag is its own snapshot), each
    # forgotten by the kernel after its walk: what stays per path walked.
    # Two halves: the first fills the bounded caches (parsed trees, sizes),
    # the second shows what stays per path once they are full.
    half() {
        local from=$1 to=$2 walked=0 r0 r1 n t on_disk
        r0=$(kib "$DAEMON" VmRSS)
        for t in $(seq -f '%03g' "$from" "$to"); do
            n=$(find "$MNT/.tags/t$t" | wc -l)
            walked=$((walked + n))
            echo 2 > /proc/sys/vm/drop_caches
        done
        sleep 1
        r1=$(kib "$DAEMON" VmRSS)
        on_disk=$("$BIN" status --json "$MNT" | python3 -c 'import json,sys; s=json.load(sys.stdin); print("%d forgotten, %d on disk" % (s["forgotten_paths"], s["forgotten_on_disk"]))')
        row "after walks $((10#$from + 1))-$((10#$to + 1)), forgotten" "$(mib "$r1") MiB" "$(awk -v a="$r1" -v b="$r0" -v n="$walked" 'BEGIN { printf "%+.1f B/path", (a - b) * 1024 / n }')" "$walked paths walked; $on_disk; $(bound)"
    }
    half 0 $((WALKS / 2 - 1))
    half $((WALKS / 2)) $((WALKS - 1))
    PREV=$(kib "$DAEMON" VmRSS)
fi

log "$TAGS tags read one after another (cat of every file that differs)"
for t in $(seq -f '%03g' 0 $((TAGS - 1))); do
    cat "$MNT/.tags/t$t/t$t/own.txt" >/dev/null
    find "$MNT/.tags/t$t" -maxdepth 1 >/dev/null
done
R3=$(kib "$DAEMON" VmRSS)
row "after $TAGS tags" "$(mib "$R3") MiB" "+$(mib $((R3 - PREV))) MiB" "$(bound)"

log "$BIG threads reading a large file each, three times"
python3 - "$MNT/main/big" "$BIG" <<'PY'
import os, sys, threading
root, n = sys.argv[1], int(sys.argv[2])
def work(i):
    for _ in range(3):
        with open(os.path.join(root, "b%03d.bin" % i), "rb") as f:
            while f.read(1 << 20):
                pass
ts = [threading.Thread(target=work, args=(i,)) for i in range(n)]
for t in ts: t.start()
for t in ts: t.join()
PY
R35=$(kib "$DAEMON" VmRSS)
row "after $BIG readers at once" "$(mib "$R35") MiB" "peak $(mib "$(kib "$DAEMON" VmHWM)") MiB" "$(split); cache $CACHE"

log "$WRITERS writers at once"
echo 5 > "/proc/$DAEMON/clear_refs"   # the peak from here on
python3 - "$MNT/main" "$WRITERS" <<'PY'
import os, sys, threading
root, n = sys.argv[1], int(sys.argv[2])
data = os.urandom(64 << 10)
def work(i):
    d = os.path.join(root, "w%02d" % i)
    os.makedirs(d, exist_ok=True)
    for j in range(300):
        p = os.path.join(d, "f%03d" % (j % 50))
        with open(p, "wb") as f:
            f.write(data)
        with open(p, "rb") as f:
            f.read()
        if j % 7 == 0:
            os.unlink(p)
ts = [threading.Thread(target=work, args=(i,)) for i in range(n)]
for t in ts: t.start()
for t in ts: t.join()
PY
sync "$MNT/main"
R4=$(kib "$DAEMON" VmRSS)
P4=$(kib "$DAEMON" VmHWM)
row "after $WRITERS writers, committed" "$(mib "$R4") MiB" "peak $(mib "$P4") MiB" ""
sleep 3   # idle: the daemon has nothing to do; what it keeps, it keeps
R5=$(kib "$DAEMON" VmRSS)
row "idle 3 s later" "$(mib "$R5") MiB" "" "$(split); $(bound)"
log "fsstress.py: ${STRESS%x*} processes x ${STRESS#*x} random operations"
echo 5 > "/proc/$DAEMON/clear_refs"   # the peak from here on
python3 scripts/fsstress.py "$MNT/main/stress" -p "${STRESS%x*}" -n "${STRESS#*x}" >"$WORK/stress.out"
sync "$MNT/main"
R6=$(kib "$DAEMON" VmRSS)
row "after fsstress.py $STRESS, committed" "$(mib "$R6") MiB" "peak $(mib "$(kib "$DAEMON" VmHWM)") MiB" "$(cut -c1-60 "$WORK/stress.out")..."
sleep 3
R7=$(kib "$DAEMON" VmRSS)
row "idle 3 s later" "$(mib "$R7") MiB" "" "$(split); $(bound)"
THREADS=$(ls "/proc/$DAEMON/task" | wc -l)
unmount_it
row "unmount after all that" "$UNMOUNT_S s" "" ""

printf '\nMemory (files %s, --cache-size %s, %s threads in the daemon; %s)\n' "$FILES" "$CACHE" "$THREADS" "$(uname -sr)"
printf '%-34s %12s %14s %s\n' "what" "RSS" "" "reference"
for r in "${ROWS[@]}"; do printf '%s\n' "$r"; done
