#!/usr/bin/env bash
# Benchmark commitfs against plain git and a tmpfs copy of the same trees.
#
# Usage: scripts/bench.sh
#
# Environment:
#   COMMITFS_BIN         use this binary instead of `cargo build --release`
#   BENCH_BIG_MIB        size of the big random file in MiB       (default 256)
#   BENCH_FILES          number of small files in the tree repo   (default 100000)
#   BENCH_WALK_FILES     files of the tree walked with find, warm and cold,
#                        as a branch, as a snapshot and on tmpfs (default 200000)
#   BENCH_STRESS         processes x operations of scripts/fsstress.py for the
#                        peak-RSS row under a write-heavy load   (default 8x3000)
#   BENCH_CACHE_BYTES    --cache-size passed to every mount       (default 67108864)
#   BENCH_REPACK         1 = `git repack -ad` the test repos      (default 1)
#   BENCH_ROUNDS         cold runs of each side, interleaved; the median is
#                        reported (a VM disk's cold reads vary 2x)  (default 3)
#   BENCH_REFERENCE_ONLY 1 = skip commitfs entirely; only build the repos and
#                        time the git / tmpfs references          (default 0)
#   BENCH_WRITE          1 = also measure the write side, after the read
#                        side; 0 = skip it                        (default 1)
#   BENCH_SAVES          saves (open, 4 KiB write, fsync, close,
#                        fsync of the directory)                   (default 200)
#   BENCH_WRITE_MIB      size of the sequential write in MiB      (default 1024)
#   BENCH_SYNC           1 = also measure syncing through a server
#                        (--remote), after the write side          (default 1)
#   BENCH_SYNC_SAVES     saves timed from machine A to machine B   (default 20)
#   BENCH_SETTLE         --settle MS for the write-side mounts    (default: the
#                        daemon's own, 200 ms)
#
# "cold" = `sync; echo 3 > /proc/sys/vm/drop_caches` right before the command
# and, for commitfs, a freshly started daemon (empty daemon cache).
# "warm walk, branch/snapshot" = find | xargs stat of main, warm, against the
# same of the same tree as the snapshot .commits/<main's sha>, warm.
# "warm" = the same command again, immediately afterwards. Cold figures that are
# compared with git are the median of BENCH_ROUNDS interleaved runs of each.
#
# Write side (BENCH_WRITE=1), each on a fresh daemon, page cache not dropped,
# `sync` before every timed part:
# - saves: BENCH_SAVES times open(O_WRONLY|O_TRUNC) of the existing file
#   main/d000/f00000.txt of tree.git, write 4 KiB, fsync, close, fsync of its
#   directory (the commit barrier: a commit when it returns), timed one by one
#   inside one python3 process; against the same commit made by the git command
#   line (hash-object -w, update-index, write-tree, commit-tree, update-ref) in a
#   bare clone. p50 and p99 (nearest rank) of all saves, the first included.
# - cp -r of 1,000 small files into main/copy (copy2, copy3, ... in later
#   rounds) followed by `sync main/copy` (an fsyncdir: it commits at once, durably,
#   instead of after the settle window), timed together; then git's main:copy
#   must be exactly the tree of the source. Against cp -r into a tmpfs checkout
#   of tree.git plus `git add -A && git commit` (which fsyncs nothing). Median of
#   BENCH_ROUNDS interleaved rounds.
# - dd bs=1M of BENCH_WRITE_MIB MiB of random bytes from tmpfs to main/big.out,
#   against the same dd from tmpfs to tmpfs, each after one untimed pass into
#   the same file; median of BENCH_ROUNDS interleaved rounds; then, timed apart,
#   `sync main` (an fsyncdir), which commits it. The
#   daemon's RSS growth is VmHWM after the sync minus VmRSS right after mounting.
#   While that sync runs, saves (4 KiB + fsync + fsync of the directory, each
#   a commit) on another branch, made by
#   mkdir MNT/bench-other, one after another: their worst and p50 latency.
# - dd conv=fsync of the same bytes into main/fsync.out, and 100 sqlite
#   transactions (python3's sqlite3 as shipped) into main/bench.db, each
#   against the same on the repository's own disk, and the commits the
#   transactions made; then 10 vim saves (vim -es, defaults), their p50 and
#   the commits they made (one each).
#
# Sync (BENCH_SYNC=1): a bare clone of tree.git as the server, two bare clones
# of it as machines A and B, each mounted with --remote file://SERVER
# --fetch-interval 1:
# - BENCH_SYNC_SAVES saves on A (write, fsync), each timed until B's mount
#   reads the new content (polled every 5 ms): p50 and p99;
# - the cost of an idle fetch on the 20,000-file repository: A's daemon CPU
#   time over 10 idle seconds divided by its fetch rounds (from its log),
#   against the CPU time of `git fetch` of the same idle server (10 runs).
#
# Exits 0 when everything ran (even if a target is missed: this is a report),
# non-zero when something failed to run (build, mount, content mismatch, ...).

set -euo pipefail

BIG_MIB=${BENCH_BIG_MIB:-256}
NFILES=${BENCH_FILES:-100000}
WALK_FILES=${BENCH_WALK_FILES:-200000}
STRESS=${BENCH_STRESS:-8x3000}
CACHE_BYTES=${BENCH_CACHE_BYTES:-67108864}
REPACK=${BENCH_REPACK:-1}
ROUNDS=${BENCH_ROUNDS:-3}
REFERENCE_ONLY=${BENCH_REFERENCE_ONLY:-0}
WRITE=${BENCH_WRITE:-1}
SAVES=${BENCH_SAVES:-200}
WRITE_MIB=${BENCH_WRITE_MIB:-1024}
SETTLE=${BENCH_SETTLE:-}
SYNC=${BENCH_SYNC:-1}
SYNC_SAVES=${BENCH_SYNC_SAVES:-20}
SAVE_FILE=d000/f00000.txt   # an existing file of tree.git
SAVE_BYTES=4096
COPY_FILES=1000
COPY_DIRS=10
FILES_PER_DIR=100
MOUNT_WAIT_STEPS=200   # x 0.05 s = 10 s
EXIT_WAIT_STEPS=200    # x 0.05 s = 10 s

for v in BIG_MIB NFILES WALK_FILES CACHE_BYTES ROUNDS SAVES WRITE_MIB SYNC_SAVES; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "bench: $v must be a positive integer (got '${!v}')" >&2; exit 2; }
done
[[ $WRITE == 0 || $WRITE == 1 ]] || { echo "bench: BENCH_WRITE must be 0 or 1 (got '$WRITE')" >&2; exit 2; }
[[ $SYNC == 0 || $SYNC == 1 ]] || { echo "bench: BENCH_SYNC must be 0 or 1 (got '$SYNC')" >&2; exit 2; }
[[ -z $SETTLE || $SETTLE =~ ^[0-9]+$ ]] || { echo "bench: BENCH_SETTLE must be a number of milliseconds (got '$SETTLE')" >&2; exit 2; }

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd)

log()  { printf '==> %s\n' "$*" >&2; }
warn() { printf 'bench: warning: %s\n' "$*" >&2; }
die()  { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- float math
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", a - b }'; }
# a/b, or "nan" when b is not positive
fdiv() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 <= 0) print "nan"; else printf "%.4f", a / b }'; }
# success when a <= b (both numeric; "nan" never passes)
fle()  { [[ $1 != nan && $2 != nan ]] && awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }
flt()  { [[ $1 != nan && $2 != nan ]] && awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <  b + 0) }'; }
f3()   { awk -v a="$1" 'BEGIN { printf "%.3f", a }'; }
f2()   { if [[ $1 == nan ]]; then printf 'n/a'; else awk -v a="$1" 'BEGIN { printf "%.2f", a }'; fi; }
# decimal MB/s for BIG_MIB MiB read in $1 seconds
mbps() { awk -v s="$1" -v m="$BIG_MIB" 'BEGIN { if (s + 0 <= 0) print "n/a"; else printf "%.1f", m * 1048576 / 1e6 / s }'; }

# timeit VAR cmd [args...]: run cmd, store elapsed wall seconds in VAR.
timeit() {
    local __var=$1; shift
    local t0 t1 el
    t0=$(date +%s.%N)
    "$@" || die "command failed: $*"
    t1=$(date +%s.%N)
    el=$(fsub "$t1" "$t0")
    printf -v "$__var" '%s' "$el"
    printf '    %-46s %9.3f s\n' "${TIMEIT_LABEL:-$*}" "$el" >&2
}

# pctl P FILE: nearest-rank P-th percentile of the numbers in FILE (one a line)
pctl() {
    sort -g -- "$2" | awk -v p="$1" '{ a[NR] = $1 } END {
        if (NR == 0) { print "nan"; exit }
        k = int((p * NR + 99) / 100); if (k < 1) k = 1
        printf "%.3f", a[k] }'
}
# decimal MB/s for $1 MiB written in $2 seconds
mbps_n() { awk -v m="$1" -v s="$2" 'BEGIN { if (s == "nan" || s + 0 <= 0) print "n/a"; else printf "%.1f", m * 1048576 / 1e6 / s }'; }

# the arguments with 3 decimals, space-separated ("nan" stays)
f3_list() { local x out=(); for x in "$@"; do if [[ $x == nan ]]; then out+=(nan); else out+=("$(f3 "$x")"); fi; done; printf '%s' "${out[*]}"; }

# median of the arguments
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# ------------------------------------------------------------- failures/rows
FAILURES=()
fail_later() { printf 'bench: FAILED: %s\n' "$*" >&2; FAILURES+=("$*"); }

# ------------------------------------------------------------- cache control
IS_ROOT=0; [[ $(id -u) -eq 0 ]] && IS_ROOT=1
CAN_DROP=0
if [[ $IS_ROOT -eq 1 ]] && sync && (echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null; then
    CAN_DROP=1
else
    warn "cannot write /proc/sys/vm/drop_caches (need root): \"cold\" numbers below are NOT cold"
fi
drop_caches() {
    sync
    if [[ $CAN_DROP -eq 1 ]]; then echo 3 > /proc/sys/vm/drop_caches; fi
}

# ----------------------------------------------------------- temp + cleanup
WORK=
TMPFS=
TMPFS_MOUNTED=0
MOUNTS=()      # commitfs mount points we mounted (may already be unmounted)
DAEMONS=()     # daemon pids we started (may already be gone)
BIN=

is_mounted() { # mount point, or listed in /proc/self/mounts (catches dead FUSE mounts)
    mountpoint -q "$1" 2>/dev/null || awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' /proc/self/mounts
}

pid_alive() { # running (not a zombie) process?
    local st
    st=$(sed -n 's/^State:[[:space:]]*\([A-Za-z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
    [[ -n $st && $st != Z ]]
}

cleanup() {
    local rc=$? m p i
    set +e
    trap - EXIT INT TERM HUP
    for m in "${MOUNTS[@]}"; do
        if is_mounted "$m"; then
            [[ -n $BIN ]] && timeout 10 "$BIN" unmount "$m" >/dev/null 2>&1
            is_mounted "$m" && fusermount3 -u "$m" >/dev/null 2>&1
            is_mounted "$m" && fusermount3 -uz "$m" >/dev/null 2>&1
            is_mounted "$m" && umount -l "$m" >/dev/null 2>&1
        fi
    done
    for p in "${DAEMONS[@]}"; do
        if pid_alive "$p"; then
            kill -TERM "$p" 2>/dev/null
            for ((i = 0; i < 40; i++)); do pid_alive "$p" || break; sleep 0.05; done
            pid_alive "$p" && kill -KILL "$p" 2>/dev/null
        fi
        wait "$p" 2>/dev/null
    done
    if [[ $TMPFS_MOUNTED -eq 1 ]]; then
        umount "$TMPFS" 2>/dev/null || umount -l "$TMPFS" 2>/dev/null
    fi
    if [[ -n $TMPFS && $TMPFS == /dev/shm/* ]]; then
        rm -rf -- "$TMPFS"
    fi
    if [[ -n $WORK && -d $WORK ]]; then
        local busy=0
        for m in "${MOUNTS[@]}" "$TMPFS"; do
            [[ -n $m ]] && is_mounted "$m" && busy=1
        done
        if [[ $busy -eq 0 ]]; then
            rm -rf --one-file-system -- "$WORK"
        else
            warn "something is still mounted under $WORK; not removing it"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ------------------------------------------------------------------- binary
if [[ $REFERENCE_ONLY != 1 ]]; then
    if [[ -n ${COMMITFS_BIN:-} ]]; then
        BIN=$COMMITFS_BIN
        [[ $BIN == */* ]] || BIN=$(command -v -- "$BIN") || die "COMMITFS_BIN=$COMMITFS_BIN not found"
    else
        log "cargo build --release"
        (cd -- "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
        BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/commitfs
    fi
    [[ -x $BIN ]] || die "commitfs binary not executable: $BIN"
    BIN=$(cd -- "$(dirname -- "$BIN")" && pwd)/$(basename -- "$BIN")
    "$BIN" mount --help >/dev/null 2>&1 || die "$BIN does not support 'mount'"
    command -v fusermount3 >/dev/null || warn "fusermount3 not found; relying on '$BIN unmount'"
fi

for tool in git awk tar cmp diff find xargs stat mountpoint head; do
    command -v "$tool" >/dev/null || die "required tool not found: $tool"
done
if [[ $WRITE == 1 ]]; then
    for tool in python3 dd cp sort timeout; do
        command -v "$tool" >/dev/null || die "required tool not found: $tool (BENCH_WRITE=0 skips the write side)"
    done
fi

WORK=$(mktemp -d /var/tmp/commitfs-bench.XXXXXX)
WORK_FS=$(stat -f -c %T "$WORK")
[[ $WORK_FS == tmpfs ]] && warn "/var/tmp is a tmpfs: cold reads of the repositories are not from disk"

# -------------------------------------------------------------------- tmpfs
TMPFS_MIB=$((BIG_MIB * 2 + 512))
# the write side holds its source and the tmpfs reference's copy at once
[[ $WRITE == 1 ]] && TMPFS_MIB=$((TMPFS_MIB + WRITE_MIB * 2))
# a page per small file: the tree's copy and an extract of it, the walked tree
TMPFS_MIB=$((TMPFS_MIB + (NFILES * 2 + WALK_FILES) * 4 / 1024 + 256))
((TMPFS_MIB < 2048)) && TMPFS_MIB=2048
if [[ $IS_ROOT -eq 1 ]]; then
    TMPFS=$WORK/tmpfs
    mkdir -p -- "$TMPFS"
    mount -t tmpfs -o "size=${TMPFS_MIB}m" tmpfs "$TMPFS" || die "mount -t tmpfs failed"
    TMPFS_MOUNTED=1
elif [[ $(stat -f -c %T /dev/shm 2>/dev/null) == tmpfs ]]; then
    TMPFS=$(mktemp -d /dev/shm/commitfs-bench.XXXXXX)
    warn "not root: using $TMPFS (/dev/shm) as the tmpfs reference"
else
    die "not root and /dev/shm is not a tmpfs: no tmpfs reference available"
fi

# -------------------------------------------------------------------- repos
GIT=(git -c user.name=bench -c user.email=bench@example.com -c init.defaultBranch=main)
BIG_REPO=$WORK/big.git
TREE_REPO=$WORK/tree.git

new_bare_repo() {
    "${GIT[@]}" init -q --bare "$1"
    "${GIT[@]}" --git-dir="$1" symbolic-ref HEAD refs/heads/main
}
commit_tree() { # commit_tree REPO WORKTREE MESSAGE
    "${GIT[@]}" --git-dir="$1" --work-tree="$2" add -A
    "${GIT[@]}" --git-dir="$1" --work-tree="$2" commit -q -m "$3"
    if [[ $REPACK == 1 ]]; then
        "${GIT[@]}" --git-dir="$1" repack -a -d -q
        "${GIT[@]}" --git-dir="$1" prune-packed
    fi
}

log "building $BIG_REPO (${BIG_MIB} MiB random big.bin)"
new_bare_repo "$BIG_REPO"
mkdir -p -- "$WORK/wt-big"
head -c "$((BIG_MIB * 1048576))" /dev/urandom > "$WORK/wt-big/big.bin"
commit_tree "$BIG_REPO" "$WORK/wt-big" "big file"
rm -rf -- "$WORK/wt-big"

NDIRS=$(((NFILES + FILES_PER_DIR - 1) / FILES_PER_DIR))
log "building $TREE_REPO ($NFILES small files in $NDIRS directories)"
new_bare_repo "$TREE_REPO"
mkdir -p -- "$WORK/wt-tree"
(
    cd -- "$WORK/wt-tree"
    for ((d = 0; d < NDIRS; d++)); do printf 'd%03d\n' "$d"; done | xargs mkdir -p --
    awk -v n="$NFILES" -v per="$FILES_PER_DIR" 'BEGIN {
        for (i = 0; i < n; i++) {
            f = sprintf("d%03d/f%05d.txt", int(i / per), i)
            for (l = 0; l < 5; l++)
                printf "%s line %d: %10d %10d the quick brown fox jumps over the lazy dog\n",
                    f, l, (i * 2654435761 + l * 40503) % 2147483647, (i * 97 + l * 13) % 1000003 > f
            close(f)
        }
    }'
)
commit_tree "$TREE_REPO" "$WORK/wt-tree" "small files"
rm -rf -- "$WORK/wt-tree"
TREE_KIB=$(du -sk --apparent-size "$TREE_REPO" | awk '{print $1}')

# The walked tree: WALK_FILES files, 1000 per directory, made with fast-import.
WALK_REPO=$WORK/walk.git
log "building $WALK_REPO ($WALK_FILES files, fast-import)"
new_bare_repo "$WALK_REPO"
python3 - "$WALK_FILES" <<'PY' | "${GIT[@]}" --git-dir="$WALK_REPO" fast-import --quiet
import sys
n = int(sys.argv[1]); w = sys.stdout.write
for i in range(n):
    body = b"walked file %d\n" % i
    w("blob\nmark :%d\ndata %d\n" % (i + 1, len(body))); sys.stdout.flush()
    sys.stdout.buffer.write(body); sys.stdout.buffer.flush(); w("\n")
w("commit refs/heads/main\ncommitter b <b@x> 1700000000 +0000\ndata 2\nw\n")
for i in range(n):
    w("M 100644 :%d w%04d/f%06d.txt\n" % (i + 1, i // 1000, i))
w("\n")
PY
[[ $REPACK == 1 ]] && "${GIT[@]}" --git-dir="$WALK_REPO" repack -adq

log "plain copies on tmpfs ($TMPFS)"
mkdir -p -- "$TMPFS/big" "$TMPFS/tree"
git --git-dir="$BIG_REPO" archive main | tar -xf - -C "$TMPFS/big"
git --git-dir="$TREE_REPO" archive main | tar -xf - -C "$TMPFS/tree"
[[ $(stat -c %s "$TMPFS/big/big.bin") -eq $((BIG_MIB * 1048576)) ]] || die "tmpfs copy of big.bin has the wrong size"
n=$(find "$TMPFS/tree" -type f | wc -l)
[[ $n -eq $NFILES ]] || die "tmpfs copy of tree has $n files, expected $NFILES"
mkdir -p -- "$TMPFS/walk"
"${GIT[@]}" --git-dir="$WALK_REPO" archive main | tar -xf - -C "$TMPFS/walk"

# ------------------------------------------------------------- workloads
cat_file()     { cat -- "$1" > /dev/null; }
git_cat_big()  { git --git-dir="$BIG_REPO" cat-file blob main:big.bin > /dev/null; }
tar_read() { # tar the directory, through a pipe (GNU tar skips reading when writing to /dev/null)
    local rc=0
    tar -cf - -C "$1" . | cat > /dev/null || rc=$?
    if [[ $rc -eq 1 ]]; then warn "tar reported files changed while reading $1"; rc=0; fi
    return "$rc"
}
git_archive_extract() {
    git --git-dir="$TREE_REPO" archive main | tar -xf - -C "$1"
}
find_stat() { find "$1" -type f -print0 | xargs -0 -r stat -- > /dev/null; }

# --------------------------------------------------------- commitfs mounts
MOUNT_PID=
MOUNT_SECS=
mount_commitfs() { # mount_commitfs REPO MNT LOGFILE [more daemon arguments...]
    local repo=$1 mnt=$2 logf=$3 i t0 t1
    shift 3
    mkdir -p -- "$mnt"
    mountpoint -q "$mnt" && die "$mnt is already a mount point"
    t0=$(date +%s.%N)
    "$BIN" mount "$repo" "$mnt" --foreground --cache-size "$CACHE_BYTES" "$@" </dev/null >>"$logf" 2>&1 &
    MOUNT_PID=$!
    DAEMONS+=("$MOUNT_PID")
    MOUNTS+=("$mnt")
    for ((i = 0; i < MOUNT_WAIT_STEPS; i++)); do
        mountpoint -q "$mnt" && break
        if ! pid_alive "$MOUNT_PID"; then
            sed 's/^/    daemon: /' "$logf" >&2 || true
            die "commitfs daemon exited before $mnt was mounted"
        fi
        sleep 0.05
    done
    if ! mountpoint -q "$mnt"; then
        sed 's/^/    daemon: /' "$logf" >&2 || true
        die "$mnt not mounted after $((MOUNT_WAIT_STEPS / 20)) s"
    fi
    t1=$(date +%s.%N)
    MOUNT_SECS=$(fsub "$t1" "$t0")
}

rss_mib() { # VmRSS of pid, in MiB
    local kb
    kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || kb=
    [[ -n $kb ]] || return 1
    awk -v k="$kb" 'BEGIN { printf "%.1f", k / 1024 }'
}

peak_rss_mib() { # VmHWM of pid, in MiB
    local kb
    kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || kb=
    [[ -n $kb ]] || return 1
    awk -v k="$kb" 'BEGIN { printf "%.1f", k / 1024 }'
}

unmount_commitfs() { # unmount_commitfs MNT PID LOGFILE
    local mnt=$1 pid=$2 logf=$3 i rc=0
    "$BIN" unmount "$mnt" >>"$logf" 2>&1 || {
        warn "'commitfs unmount $mnt' failed; trying fusermount3 -u"
        fusermount3 -u "$mnt" || die "could not unmount $mnt"
    }
    for ((i = 0; i < EXIT_WAIT_STEPS; i++)); do
        pid_alive "$pid" || break
        sleep 0.05
    done
    if pid_alive "$pid"; then
        fail_later "daemon $pid did not exit within $((EXIT_WAIT_STEPS / 20)) s of unmounting $mnt"
        kill -TERM "$pid" 2>/dev/null || true
    fi
    wait "$pid" || rc=$?
    if [[ $rc -ne 0 ]]; then
        sed 's/^/    daemon: /' "$logf" >&2 || true
        fail_later "daemon for $mnt exited with status $rc"
    fi
    mountpoint -q "$mnt" && die "$mnt still mounted after unmount"
    return 0
}

# =================================================================== header
{
    echo "commitfs benchmark  $(date '+%Y-%m-%d %H:%M:%S')"
    echo "  host:        $(uname -srm), $(nproc) CPUs, $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
    echo "  binary:      ${BIN:-(skipped: BENCH_REFERENCE_ONLY=1)}"
    echo "  work dir:    $WORK ($WORK_FS)"
    echo "  tmpfs:       $TMPFS"
    echo "  big.git:     big.bin = ${BIG_MIB} MiB random bytes, $(du -sk "$BIG_REPO" | awk '{ printf "%.1f MiB", $1 / 1024 }') on disk"
    echo "  tree.git:    $NFILES files in $NDIRS dirs, $(awk -v k="$TREE_KIB" 'BEGIN { printf "%.1f MiB", k / 1024 }') on disk$([[ $REPACK == 1 ]] && echo ", packed" || echo ", loose objects")"
    echo "  cache size:  $CACHE_BYTES bytes ($(awk -v b="$CACHE_BYTES" 'BEGIN { printf "%.0f MiB", b / 1048576 }'))"
    if [[ $CAN_DROP -eq 1 ]]; then echo "  cold:        drop_caches before each cold run (+ fresh daemon for commitfs)"
    else echo "  cold:        NOT COLD (no root: page cache not dropped; fresh daemon only)"; fi
    echo
}

# ============================================================ reference runs
log "reference: git cat-file (cold) / tmpfs cat (warm)"
drop_caches
TIMEIT_LABEL="git cat-file blob main:big.bin (cold)" timeit T_GIT_CAT git_cat_big
cat_file "$TMPFS/big/big.bin"   # warm-up (tmpfs is in memory anyway)
TIMEIT_LABEL="cat tmpfs/big.bin (warm)" timeit T_TMPFS_CAT cat_file "$TMPFS/big/big.bin"

log "reference: git archive | tar x (cold) / tar of tmpfs copy (warm)"
EXTRACT=$(mktemp -d "$TMPFS/extract.XXXXXX")
drop_caches
TIMEIT_LABEL="git archive main | tar x -C tmpfs (cold)" timeit T_GIT_ARCHIVE git_archive_extract "$EXTRACT"
n=$(find "$EXTRACT" -type f | wc -l)
[[ $n -eq $NFILES ]] || die "git archive extracted $n files, expected $NFILES"
rm -rf -- "$EXTRACT"
tar_read "$TMPFS/tree"          # warm-up
TIMEIT_LABEL="tar cf - tmpfs/tree | cat (warm)" timeit T_TMPFS_TAR tar_read "$TMPFS/tree"

log "reference: find | xargs stat on tmpfs copy"
drop_caches
TIMEIT_LABEL="find tmpfs/tree | xargs stat (cold)" timeit T_TMPFS_FIND_COLD find_stat "$TMPFS/tree"
TIMEIT_LABEL="find tmpfs/tree | xargs stat (warm)" timeit T_TMPFS_FIND_WARM find_stat "$TMPFS/tree"
walk() { find "$1" > /dev/null; }
drop_caches
TIMEIT_LABEL="find tmpfs/walk, $WALK_FILES files (cold)" timeit T_TMPFS_WALK_COLD walk "$TMPFS/walk"
TIMEIT_LABEL="find tmpfs/walk (warm)" timeit T_TMPFS_WALK_WARM walk "$TMPFS/walk"

# ============================================================= commitfs runs
if [[ $REFERENCE_ONLY != 1 ]]; then
    MNT=$WORK/mnt
    LOGF=$WORK/daemon.log
    : > "$LOGF"

    # Cold runs alternate with git's, $ROUNDS rounds, each on a fresh daemon.
    G=("$T_GIT_CAT"); C=()
    for ((round = 1; round <= ROUNDS; round++)); do
        if ((round > 1)); then
            drop_caches
            TIMEIT_LABEL="git cat-file blob main:big.bin (cold, round $round)" timeit t git_cat_big
            G+=("$t")
        fi
        log "commitfs: big file (fresh mount, --cache-size $CACHE_BYTES, round $round)"
        mount_commitfs "$BIG_REPO" "$MNT" "$LOGF"
        BIG_PID=$MOUNT_PID; MOUNT_SECS_BIG=$MOUNT_SECS
        drop_caches
        TIMEIT_LABEL="cat mnt/main/big.bin (cold, round $round)" timeit t cat_file "$MNT/main/big.bin"
        C+=("$t")
        if ((round == 1)); then
            TIMEIT_LABEL="cat mnt/main/big.bin (warm)" timeit T_CF_CAT_WARM cat_file "$MNT/main/big.bin"
            log "verifying: cmp mnt/main/big.bin tmpfs/big/big.bin"
            if ! cmp -- "$MNT/main/big.bin" "$TMPFS/big/big.bin" >&2; then
                fail_later "content mismatch: $MNT/main/big.bin differs from the git blob"
            fi
            RSS_BIG=$(peak_rss_mib "$BIG_PID") || die "cannot read VmHWM of daemon $BIG_PID (did it die?)"
        fi
        unmount_commitfs "$MNT" "$BIG_PID" "$LOGF"
    done
    T_GIT_CAT=$(median "${G[@]}"); T_CF_CAT_COLD=$(median "${C[@]}")
    log "big read cold, median of $ROUNDS: commitfs $T_CF_CAT_COLD s (${C[*]}), git $T_GIT_CAT s (${G[*]})"

    G=("$T_GIT_ARCHIVE"); C=()
    for ((round = 1; round <= ROUNDS; round++)); do
        if ((round > 1)); then
            EXTRACT=$(mktemp -d "$TMPFS/extract.XXXXXX")
            drop_caches
            TIMEIT_LABEL="git archive main | tar x -C tmpfs (cold, round $round)" timeit t git_archive_extract "$EXTRACT"
            rm -rf -- "$EXTRACT"
            G+=("$t")
        fi
        log "commitfs: tree, tar (fresh mount, round $round)"
        mount_commitfs "$TREE_REPO" "$MNT" "$LOGF"
        TREE_PID=$MOUNT_PID; MOUNT_SECS_TREE=$MOUNT_SECS
        drop_caches
        TIMEIT_LABEL="tar cf - mnt/main | cat (cold, round $round)" timeit t tar_read "$MNT/main"
        C+=("$t")
        if ((round == 1)); then
            TIMEIT_LABEL="tar cf - mnt/main | cat (warm)" timeit T_CF_TAR_WARM tar_read "$MNT/main"
            log "verifying: diff -r mnt/main tmpfs/tree"
            if ! diff -r -q -- "$MNT/main" "$TMPFS/tree" >&2; then
                fail_later "content mismatch: $MNT/main differs from git archive of tree.git"
            fi
            RSS_TREE_TAR=$(peak_rss_mib "$TREE_PID") || die "cannot read VmHWM of daemon $TREE_PID (did it die?)"
        fi
        unmount_commitfs "$MNT" "$TREE_PID" "$LOGF"
    done
    T_GIT_ARCHIVE=$(median "${G[@]}"); T_CF_TAR_COLD=$(median "${C[@]}")
    log "tree tar cold, median of $ROUNDS: commitfs $T_CF_TAR_COLD s (${C[*]}), git $T_GIT_ARCHIVE s (${G[*]})"

    log "commitfs: tree, find | xargs stat (fresh mount)"
    mount_commitfs "$TREE_REPO" "$MNT" "$LOGF"
    TREE_PID=$MOUNT_PID
    drop_caches
    TIMEIT_LABEL="find mnt/main | xargs stat (cold)" timeit T_CF_FIND_COLD find_stat "$MNT/main"
    TIMEIT_LABEL="find mnt/main | xargs stat (warm)" timeit T_CF_FIND_WARM find_stat "$MNT/main"
    # The same tree as a snapshot (a commit, which can never change), walked
    # twice, warm the second time: a warm walk of a branch should cost what
    # one of a snapshot does (both are cached by the kernel).
    SNAP_DIR=$MNT/.commits/$("${GIT[@]}" --git-dir="$TREE_REPO" rev-parse main)
    find_stat "$SNAP_DIR"
    TIMEIT_LABEL="find mnt/.commits/<main> | xargs stat (warm)" timeit T_CF_FIND_SNAP_WARM find_stat "$SNAP_DIR"
    RSS_TREE_FIND=$(peak_rss_mib "$TREE_PID") || die "cannot read VmHWM of daemon $TREE_PID (did it die?)"
    unmount_commitfs "$MNT" "$TREE_PID" "$LOGF"

    log "commitfs: find of the $WALK_FILES-file branch and snapshot (fresh mount)"
    mount_commitfs "$WALK_REPO" "$MNT" "$LOGF"
    WALK_PID=$MOUNT_PID
    drop_caches
    TIMEIT_LABEL="find mnt/main, $WALK_FILES files (cold)" timeit T_CF_WALK_COLD walk "$MNT/main"
    TIMEIT_LABEL="find mnt/main (warm)" timeit T_CF_WALK_WARM walk "$MNT/main"
    WALK_SNAP=$MNT/.commits/$("${GIT[@]}" --git-dir="$WALK_REPO" rev-parse main)
    walk "$WALK_SNAP"
    TIMEIT_LABEL="find mnt/.commits/<main> (warm)" timeit T_CF_WALK_SNAP_WARM walk "$WALK_SNAP"
    unmount_commitfs "$MNT" "$WALK_PID" "$LOGF"
fi

# =============================================================== write side
# Each workload: the reference, then commitfs on a fresh daemon. No cache drop
# (writes land in the page cache on both sides); `sync` before each timed part
# so that no earlier run's dirty data is flushed inside it.
if [[ $WRITE == 1 ]]; then
    MNT=$WORK/mnt
    LOGF=$WORK/daemon.log
    touch -- "$LOGF"
    MOUNT_ARGS=()
    [[ -n $SETTLE ]] && MOUNT_ARGS=(--settle "$SETTLE")
    SETTLE_DESC=${SETTLE:+$SETTLE ms}; SETTLE_DESC=${SETTLE_DESC:-daemon default}

    # --------------------------------------------------------------- saves
    # save_until.py FILE STOP: saves FILE (4 KiB of new content, fsync, fsync of
    # its directory) one after another until STOP exists; one line per save
    # on stdout, in milliseconds. The worst-save rows, in the mount and on the
    # repository's own disk, both run it.
    SAVE_UNTIL_PY=$WORK/save_until.py
    cat > "$SAVE_UNTIL_PY" <<'PY'
import os, sys, time
path, stop = sys.argv[1], sys.argv[2]
i = 0
while not os.path.exists(stop):
    # New content each time, so that each save is a commit.
    data = (b"%09d\n" % i) * 409 + b"......"
    i += 1
    t = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    d = os.open(os.path.dirname(path), os.O_RDONLY)
    os.fsync(d)
    os.close(d)
    print(f"{(time.perf_counter() - t) * 1000:.3f}", flush=True)
PY
    SAVE_PY=$WORK/save_bench.py
    cat > "$SAVE_PY" <<'PYEOF'
"""Time saves: one line per save on stdout, in milliseconds.

save_bench.py fs  FILE   N LAST_OUT         open(O_WRONLY|O_TRUNC), write, fsync, close,
    fsync of the directory (the commit barrier: a commit, durable, when it returns)
save_bench.py git GITDIR N LAST_OUT PATH INDEX
    the same commit with the git command line in a bare repository: hash-object -w,
    update-index --cacheinfo, write-tree, commit-tree, update-ref (on branch main)
Save i writes 4096 bytes that name i, so every save changes the file; LAST_OUT
gets the last content written.
"""
import os
import subprocess
import sys
import time


def content(i, n):
    line = (b"save %06d of %06d " % (i, n)).ljust(63, b".") + b"\n"
    return line * 64


def fs_saves(path, bufs):
    lat = []
    for b in bufs:
        t0 = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            mv = memoryview(b)
            while mv:
                mv = mv[os.write(fd, mv):]
            os.fsync(fd)
        finally:
            os.close(fd)
        d = os.open(os.path.dirname(path), os.O_RDONLY)
        try:
            os.fsync(d)
        finally:
            os.close(d)
        lat.append(time.perf_counter() - t0)
    return lat


def git_saves(gitdir, path, index, bufs):
    env = dict(os.environ, GIT_DIR=gitdir, GIT_INDEX_FILE=index,
               GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.com",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.com")

    def git(*args, data=None):
        r = subprocess.run(("git",) + args, input=data, stdout=subprocess.PIPE, env=env, check=True)
        return r.stdout.decode().strip()

    git("read-tree", "main")
    parent = git("rev-parse", "--verify", "main^{commit}")
    lat = []
    for b in bufs:
        t0 = time.perf_counter()
        oid = git("hash-object", "-w", "--stdin", data=b)
        git("update-index", "--add", "--cacheinfo", "100644,%s,%s" % (oid, path))
        tree = git("write-tree")
        commit = git("commit-tree", tree, "-p", parent, "-m", "save")
        git("update-ref", "refs/heads/main", commit, parent)
        parent = commit
        lat.append(time.perf_counter() - t0)
    return lat


def main():
    mode, target, n, last = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    bufs = [content(i, n) for i in range(1, n + 1)]
    if mode == "fs":
        lat = fs_saves(target, bufs)
    elif mode == "git":
        lat = git_saves(target, sys.argv[5], sys.argv[6], bufs)
    else:
        sys.exit("save_bench.py: unknown mode " + mode)
    with open(last, "wb") as f:
        f.write(bufs[-1])
    sys.stdout.write("".join("%.4f\n" % (s * 1000) for s in lat))


main()
PYEOF
    SAVE_TIMEOUT=$((60 + SAVES))   # 1 s a save, and a minute

    # check_saves LABEL GITDIR BEFORE LAST_FILE: >= SAVES new commits on main, content = the last save
    check_saves() {
        local label=$1 gd=$2 before=$3 lastf=$4 after
        SAVE_NEW_COMMITS="?"
        after=$(git --git-dir="$gd" rev-list --count main) || { fail_later "$label: cannot count commits of main"; return 0; }
        if ((after - before < SAVES)); then
            fail_later "$label: main has $((after - before)) new commits after $SAVES saves"
        fi
        if ! git --git-dir="$gd" cat-file blob "main:$SAVE_FILE" | cmp -s - "$lastf"; then
            fail_later "$label: main:$SAVE_FILE is not the last content written"
        fi
        SAVE_NEW_COMMITS=$((after - before))
    }

    log "write: $SAVES saves of $SAVE_FILE (${SAVE_BYTES} B + fsync) - git command line, bare clone of tree.git"
    SAVE_REF=$WORK/save-ref.git
    git clone -q --bare -- "$TREE_REPO" "$SAVE_REF"
    before=$(git --git-dir="$SAVE_REF" rev-list --count main)
    sync
    if timeout -k 5 "$SAVE_TIMEOUT" python3 "$SAVE_PY" git "$SAVE_REF" "$SAVES" "$WORK/save-ref.last" \
            "$SAVE_FILE" "$WORK/save-ref.index" > "$WORK/save-ref.ms"; then
        check_saves "git command line saves" "$SAVE_REF" "$before" "$WORK/save-ref.last"
        G_SAVE_P50=$(pctl 50 "$WORK/save-ref.ms"); G_SAVE_P99=$(pctl 99 "$WORK/save-ref.ms")
        printf '    %-46s %9s ms\n' "git CLI save p50 / p99" "$G_SAVE_P50 / $G_SAVE_P99" >&2
    else
        die "the git command line save loop failed"
    fi

    if [[ $REFERENCE_ONLY != 1 ]]; then
        log "commitfs: $SAVES saves of main/$SAVE_FILE (fresh mount, settle: $SETTLE_DESC)"
        before=$(git --git-dir="$TREE_REPO" rev-list --count main)
        mount_commitfs "$TREE_REPO" "$MNT" "$LOGF" "${MOUNT_ARGS[@]}"
        SAVE_PID=$MOUNT_PID
        sync
        if timeout -k 5 "$SAVE_TIMEOUT" python3 "$SAVE_PY" fs "$MNT/main/$SAVE_FILE" "$SAVES" "$WORK/save-cf.last" \
                > "$WORK/save-cf.ms"; then
            # fsync returned: the commits must be in the repository already, before unmounting
            check_saves "commitfs saves" "$TREE_REPO" "$before" "$WORK/save-cf.last"
            CF_SAVE_COMMITS=$SAVE_NEW_COMMITS
            CF_SAVE_P50=$(pctl 50 "$WORK/save-cf.ms"); CF_SAVE_P99=$(pctl 99 "$WORK/save-cf.ms")
            printf '    %-46s %9s ms\n' "commitfs save p50 / p99" "$CF_SAVE_P50 / $CF_SAVE_P99" >&2
        else
            fail_later "the commitfs save loop failed (or took over $SAVE_TIMEOUT s)"
            CF_SAVE_P50=nan; CF_SAVE_P99=nan
        fi
        unmount_commitfs "$MNT" "$SAVE_PID" "$LOGF"
    fi

    # ---------------------------------------------------------------- cp -r
    log "write: $COPY_FILES small files in $COPY_DIRS dirs on tmpfs, and their git tree"
    COPY_SRC=$TMPFS/copy-src
    mkdir -p -- "$COPY_SRC"
    (
        cd -- "$COPY_SRC"
        awk -v n="$COPY_FILES" -v nd="$COPY_DIRS" 'BEGIN {
            per = int((n + nd - 1) / nd)
            for (d = 0; d < nd; d++) system(sprintf("mkdir -p c%02d", d))
            for (i = 0; i < n; i++) {
                f = sprintf("c%02d/g%04d.txt", int(i / per), i)
                for (l = 0; l < 3; l++)
                    printf "%s copy line %d: %10d the quick brown fox jumps over the lazy dog\n",
                        f, l, (i * 2246822519 + l * 3266489917) % 2147483647 > f
                close(f)
            }
        }'
    )
    n=$(find "$COPY_SRC" -type f | wc -l)
    [[ $n -eq $COPY_FILES ]] || die "generated $n files to copy, expected $COPY_FILES"
    COPY_BYTES=$(du -sb --apparent-size "$COPY_SRC" | awk '{ print $1 }')
    COPY_ID_REPO=$TMPFS/copy-id.git
    new_bare_repo "$COPY_ID_REPO"
    "${GIT[@]}" --git-dir="$COPY_ID_REPO" --work-tree="$COPY_SRC" add -A
    COPY_TREE=$(git --git-dir="$COPY_ID_REPO" write-tree)
    rm -rf -- "$COPY_ID_REPO"

    log "write: tmpfs checkout of tree.git for the cp -r reference"
    COPY_WT=$TMPFS/copy-ref
    "${GIT[@]}" clone -q -- "$TREE_REPO" "$COPY_WT"
    sleep 1.1                                                    # no racily clean index entries
    "${GIT[@]}" -C "$COPY_WT" status --porcelain > /dev/null     # refresh + rewrite the index

    copy_name() { if (($1 == 1)); then printf 'copy'; else printf 'copy%d' "$1"; fi; }
    ref_copy() { # ref_copy NAME
        cp -r -- "$COPY_SRC" "$COPY_WT/$1" &&
            "${GIT[@]}" -C "$COPY_WT" add -A &&
            "${GIT[@]}" -C "$COPY_WT" commit -q -m copy
    }
    cf_copy() { # cf_copy NAME: cp -r into main, then `sync` of the copy (fsync: commits now, durably)
        local t0 t1
        t0=$(date +%s.%N)
        timeout -k 5 120 cp -r -- "$COPY_SRC" "$MNT/main/$1" || return 1
        t1=$(date +%s.%N)
        COPY_CP_SECS=$(fsub "$t1" "$t0")
        timeout -k 5 120 sync -- "$MNT/main/$1"
    }

    G=(); C=(); K=(); P=()
    for ((round = 1; round <= ROUNDS; round++)); do
        name=$(copy_name "$round")
        sync
        TIMEIT_LABEL="cp -r + git add -A + commit, tmpfs ($name)" timeit t ref_copy "$name"
        G+=("$t")
        [[ $(git -C "$COPY_WT" rev-parse -q --verify "HEAD:$name") == "$COPY_TREE" ]] ||
            die "reference copy: HEAD:$name is not the tree of the source"
        if [[ $REFERENCE_ONLY != 1 ]]; then
            log "commitfs: cp -r $COPY_FILES files into main/$name (fresh mount, settle: $SETTLE_DESC, round $round)"
            before=$(git --git-dir="$TREE_REPO" rev-list --count main)
            mount_commitfs "$TREE_REPO" "$MNT" "$LOGF" "${MOUNT_ARGS[@]}"
            COPY_PID=$MOUNT_PID
            sync
            TIMEIT_LABEL="cp -r mnt/main/$name + sync mnt/main/$name" timeit t cf_copy "$name"
            # sync returned: the copy must be committed already
            if [[ $(git --git-dir="$TREE_REPO" rev-parse -q --verify "main:$name" 2>/dev/null) != "$COPY_TREE" ]]; then
                fail_later "commitfs: main:$name was not the copied tree when sync returned"
                t=nan
            fi
            C+=("$t"); P+=("$COPY_CP_SECS")
            unmount_commitfs "$MNT" "$COPY_PID" "$LOGF"
            after=$(git --git-dir="$TREE_REPO" rev-list --count main)
            K+=("$((after - before))")
            n=$(git --git-dir="$TREE_REPO" ls-tree -r --name-only main "$name" | wc -l)
            [[ $n -eq $COPY_FILES ]] || fail_later "commitfs: main:$name has $n files after unmounting, expected $COPY_FILES"
            [[ $(git --git-dir="$TREE_REPO" rev-parse -q --verify "main:$name") == "$COPY_TREE" ]] ||
                fail_later "commitfs: main:$name is not the tree of the source after unmounting"
        fi
    done
    rm -rf -- "$COPY_WT" "$COPY_SRC"
    T_REF_COPY=$(median "${G[@]}"); T_REF_COPY_ALL=$(f3_list "${G[@]}")
    if [[ $REFERENCE_ONLY != 1 ]]; then
        if printf '%s\n' "${C[@]}" | grep -qx nan; then T_CF_COPY=nan; else T_CF_COPY=$(median "${C[@]}"); fi
        T_CF_COPY_ALL=$(f3_list "${C[@]}"); T_CF_COPY_CP_ALL=$(f3_list "${P[@]}")
        CF_COPY_COMMITS=$(median "${K[@]}"); CF_COPY_COMMITS_ALL="${K[*]}"
        log "cp -r, median of $ROUNDS: commitfs $T_CF_COPY s ($T_CF_COPY_ALL), reference $T_REF_COPY s ($T_REF_COPY_ALL)"
    fi

    # ------------------------------------------------------- sequential write
    log "write: ${WRITE_MIB} MiB of random bytes on tmpfs"
    DD_SRC=$TMPFS/src.bin
    DD_BYTES=$((WRITE_MIB * 1048576))
    head -c "$DD_BYTES" /dev/urandom > "$DD_SRC"
    DD_OID=$(git --git-dir="$TREE_REPO" hash-object --no-filters -- "$DD_SRC")
    DD_TIMEOUT=$((120 + WRITE_MIB / 4))   # at least 4 MiB/s
    tmpfs_dd() {
        timeout -k 5 "$DD_TIMEOUT" dd if="$DD_SRC" of="$TMPFS/copy.bin" bs=1M status=none
    }
    cf_dd() {
        timeout -k 5 "$DD_TIMEOUT" dd if="$DD_SRC" of="$MNT/main/big.out" bs=1M status=none
    }
    if [[ $REFERENCE_ONLY != 1 ]]; then
        log "commitfs: dd ${WRITE_MIB} MiB to main/big.out (fresh mount, settle: $SETTLE_DESC)"
        mount_commitfs "$TREE_REPO" "$MNT" "$LOGF" "${MOUNT_ARGS[@]}"
        DD_PID=$MOUNT_PID
        RSS_DD_START=$(rss_mib "$DD_PID") || die "cannot read VmRSS of daemon $DD_PID (did it die?)"
    fi
    # warm-up, untimed, on both sides: in a VM the first touch of fresh guest
    # memory makes a first pass several times slower. Every later dd truncates
    # and rewrites the same file; main/big.out is committed only by the sync.
    tmpfs_dd || die "dd to tmpfs (warm-up) failed"
    if [[ $REFERENCE_ONLY != 1 ]]; then cf_dd || die "dd to main/big.out (warm-up) failed"; fi
    G=(); C=()
    for ((round = 1; round <= ROUNDS; round++)); do
        sync
        TIMEIT_LABEL="dd tmpfs/src.bin -> tmpfs/copy.bin (round $round)" timeit t tmpfs_dd
        G+=("$t")
        if [[ $REFERENCE_ONLY != 1 ]]; then
            sync
            TIMEIT_LABEL="dd tmpfs/src.bin -> mnt/main/big.out (round $round)" timeit t cf_dd
            C+=("$t")
        fi
    done
    cmp -s -- "$DD_SRC" "$TMPFS/copy.bin" || die "dd to tmpfs: copy.bin differs from src.bin"
    rm -f -- "$TMPFS/copy.bin"
    T_TMPFS_DD=$(median "${G[@]}"); T_TMPFS_DD_ALL=$(f3_list "${G[@]}")
    if [[ $REFERENCE_ONLY != 1 ]]; then
        T_CF_DD=$(median "${C[@]}"); T_CF_DD_ALL=$(f3_list "${C[@]}")
        # While main commits the big file, saves on another branch (write 4
        # KiB, fsync it, fsync the directory: each a commit, durable), one
        # after another: the worst of them says whether one branch's commit
        # holds up another's saves.
        mkdir -- "$MNT/bench-other" || die "mkdir of branch bench-other failed"
        OTHER_STOP=$WORK/other.stop; rm -f -- "$OTHER_STOP"
        python3 "$SAVE_UNTIL_PY" "$MNT/bench-other/save.txt" "$OTHER_STOP" > "$WORK/save-other.ms" &
        OTHER_PID=$!
        TIMEIT_LABEL="sync mnt/main (commits big.out, durably)" \
            timeit T_CF_DD_SYNC timeout -k 5 "$DD_TIMEOUT" sync -- "$MNT/main"
        touch -- "$OTHER_STOP"
        wait "$OTHER_PID" || fail_later "saves on bench-other during main's commit failed"
        OTHER_SAVES=$(wc -l < "$WORK/save-other.ms")
        OTHER_MAX=$(pctl 100 "$WORK/save-other.ms")
        OTHER_P50=$(pctl 50 "$WORK/save-other.ms")
        OTHER_SLOW=$(awk '$1 > 50' "$WORK/save-other.ms" | wc -l)
        RSS_DD_PEAK=$(peak_rss_mib "$DD_PID") || die "cannot read VmHWM of daemon $DD_PID (did it die?)"
        RSS_DD_GROWTH=$(awk -v a="$RSS_DD_PEAK" -v b="$RSS_DD_START" 'BEGIN { printf "%.1f", a - b }')
        # sync returned: the blob must be committed already, before unmounting
        n=$(git --git-dir="$TREE_REPO" cat-file -s main:big.out 2>/dev/null) || n=missing
        [[ $n == "$DD_BYTES" ]] || fail_later "commitfs: main:big.out has size $n after dd and sync, expected $DD_BYTES"
        [[ $(git --git-dir="$TREE_REPO" rev-parse -q --verify main:big.out) == "$DD_OID" ]] ||
            fail_later "commitfs: main:big.out is not the blob of the bytes written"
        TIMEIT_LABEL="unmount after the big write" timeit T_CF_DD_UNMOUNT unmount_commitfs "$MNT" "$DD_PID" "$LOGF"
    fi

    # Savers that fsync as they go, against the same on the repository's own
    # disk ($WORK): dd conv=fsync of the big file, and 100 sqlite transactions
    # (python3's sqlite3, journal_mode DELETE, synchronous FULL, as shipped).
    NATIVE=$WORK/native; mkdir -p -- "$NATIVE"
    SQL_TX=100
    sqlite_run() { # sqlite_run DB
        python3 - "$1" "$SQL_TX" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("create table if not exists t (k integer primary key, v text)")
for i in range(int(sys.argv[2])):
    db.execute("begin")
    db.execute("insert into t (v) values (?)", ("row %d" % i,))
    db.execute("commit")
db.close()
PY
    }
    sync
    # The reference for the worst save during a large commit: the same saves
    # (write 4 KiB, fsync, fsync of the directory) on the repository's own
    # disk while this dd writes and fsyncs its 1 GiB there.
    NSTOP=$WORK/native-saves.stop; rm -f -- "$NSTOP"
    python3 "$SAVE_UNTIL_PY" "$NATIVE/save.txt" "$NSTOP" > "$WORK/save-native.ms" &
    NSAVE_PID=$!
    TIMEIT_LABEL="dd conv=fsync ${WRITE_MIB} MiB -> repository's disk" \
        timeit T_NATIVE_DDF timeout -k 5 "$DD_TIMEOUT" dd if="$DD_SRC" of="$NATIVE/fsync.out" bs=1M conv=fsync status=none
    touch -- "$NSTOP"
    wait "$NSAVE_PID" || fail_later "native saves during the native dd failed"
    NATIVE_SAVE_MAX=$(pctl 100 "$WORK/save-native.ms")
    rm -f -- "$NATIVE/fsync.out"
    TIMEIT_LABEL="$SQL_TX sqlite transactions on the repository's disk" timeit T_NATIVE_SQL sqlite_run "$NATIVE/bench.db"
    if [[ $REFERENCE_ONLY != 1 ]]; then
        log "commitfs: dd conv=fsync and $SQL_TX sqlite transactions (fresh mount)"
        mount_commitfs "$TREE_REPO" "$MNT" "$LOGF" "${MOUNT_ARGS[@]}"
        FS_PID=$MOUNT_PID
        sync
        TIMEIT_LABEL="dd conv=fsync ${WRITE_MIB} MiB -> mnt/main/fsync.out" \
            timeit T_CF_DDF timeout -k 5 "$DD_TIMEOUT" dd if="$DD_SRC" of="$MNT/main/fsync.out" bs=1M conv=fsync status=none
        rm -f -- "$MNT/main/fsync.out"
        sync -- "$MNT/main"
        n0=$("${GIT[@]}" --git-dir="$TREE_REPO" rev-list --count main)
        TIMEIT_LABEL="$SQL_TX sqlite transactions in mnt/main" timeit T_CF_SQL sqlite_run "$MNT/main/bench.db"
        sync -- "$MNT/main"
        n1=$("${GIT[@]}" --git-dir="$TREE_REPO" rev-list --count main)
        CF_SQL_COMMITS=$((n1 - n0))
        # vim saves, as vim makes them with its defaults (backup by rename,
        # swap file, fsync), one line added each, outside /tmp: each must be
        # one commit; the time is vim's, start to exit.
        if command -v vim >/dev/null; then
            VIM_SAVES=10
            printf 'notes\n' > "$MNT/main/notes.txt"; sync -- "$MNT/main"
            n0=$("${GIT[@]}" --git-dir="$TREE_REPO" rev-list --count main)
            : > "$WORK/vim.ms"
            for ((v = 0; v < VIM_SAVES; v++)); do
                t0=$(date +%s.%N)
                HOME=$WORK vim -u DEFAULTS -i NONE -es -c "normal Goline $v" -c wq -- "$MNT/main/notes.txt" </dev/null ||
                    fail_later "vim save $v failed"
                t1=$(date +%s.%N)
                awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) * 1000 }' >> "$WORK/vim.ms"
                sync -- "$MNT/main"
            done
            n1=$("${GIT[@]}" --git-dir="$TREE_REPO" rev-list --count main)
            VIM_COMMITS=$((n1 - n0))
            VIM_P50=$(pctl 50 "$WORK/vim.ms")
            "${GIT[@]}" --git-dir="$TREE_REPO" log --all --name-only --format= | grep -q '~$\|\.swp$\|^4913$' &&
                fail_later "vim: a backup or swap name is in history"
        fi
        unmount_commitfs "$MNT" "$FS_PID" "$LOGF"

        # Peak memory under a write-heavy load: fsstress.py's mix by
        # ${STRESS%x*} processes, the daemon's anonymous RSS sampled every
        # 20 ms, against docs/SEMANTICS.md's bound (128 MiB + --cache-size +
        # 300 bytes per path in memory, plus a commit's 32 MiB batch while
        # one runs).
        log "commitfs: fsstress.py ${STRESS} (fresh mount)"
        mount_commitfs "$TREE_REPO" "$MNT" "$LOGF"
        FS_PID=$MOUNT_PID
        ( peak=0; while kill -0 "$FS_PID" 2>/dev/null && [[ ! -e $WORK/stress.done ]]; do
            k=$(awk '/^RssAnon:/ { print $2 }' "/proc/$FS_PID/status" 2>/dev/null || echo 0)
            ((k > peak)) && peak=$k && echo "$peak" > "$WORK/stress.peak"
            sleep 0.02
          done ) &
        SAMPLER=$!
        python3 "$ROOT/scripts/fsstress.py" "$MNT/main/stress" -p "${STRESS%x*}" -n "${STRESS#*x}" > "$WORK/stress.out" ||
            fail_later "fsstress.py: $(tail -1 "$WORK/stress.out")"
        sync -- "$MNT/main"
        touch "$WORK/stress.done"; wait "$SAMPLER" || true
        STRESS_PEAK=$(awk '{ printf "%.1f", $1 / 1024 }' "$WORK/stress.peak")
        STRESS_PATHS=$("$BIN" status --json "$MNT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["inodes"])')
        STRESS_BOUND=$(awk -v c="$CACHE_BYTES" -v p="$STRESS_PATHS" 'BEGIN { printf "%.1f", (128 * 1048576 + c + 300 * p + 32 * 1048576) / 1048576 }')
        unmount_commitfs "$MNT" "$FS_PID" "$LOGF"
    fi
    rm -f -- "$DD_SRC"
fi

# ====================================================================== sync
if [[ $SYNC == 1 && $REFERENCE_ONLY != 1 ]]; then
    log "sync: server and machines A, B (bare clones of tree.git)"
    SYNC_SRV=$WORK/sync-server.git
    "${GIT[@]}" clone -q --bare -- "$TREE_REPO" "$SYNC_SRV"
    "${GIT[@]}" clone -q --bare -- "$SYNC_SRV" "$WORK/sync-a.git"
    "${GIT[@]}" clone -q --bare -- "$SYNC_SRV" "$WORK/sync-b.git"
    MNT_A=$WORK/mnt-sync-a; MNT_B=$WORK/mnt-sync-b
    LOG_A=$WORK/sync-a.log; LOG_B=$WORK/sync-b.log
    mount_commitfs "$WORK/sync-a.git" "$MNT_A" "$LOG_A" --remote "file://$SYNC_SRV" --fetch-interval 1 -v -v
    PID_A=$MOUNT_PID
    mount_commitfs "$WORK/sync-b.git" "$MNT_B" "$LOG_B" --remote "file://$SYNC_SRV" --fetch-interval 1
    PID_B=$MOUNT_PID
    log "sync: $SYNC_SAVES saves on A, each timed until B reads it"
    python3 - "$MNT_A/main" "$MNT_B/main" "$SYNC_SAVES" > "$WORK/sync.ms" <<'PY' || fail_later "sync: a save on A did not reach B within 30 s"
import os, sys, time
a, b, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    name = "sync-%03d.txt" % i
    data = ("save %d from A\n" % i).encode()
    fd = os.open(os.path.join(a, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    t0 = time.monotonic()
    while True:
        try:
            with open(os.path.join(b, name), "rb") as f:
                if f.read() == data:
                    break
        except OSError:
            pass
        if time.monotonic() - t0 > 30:
            sys.exit(1)
        time.sleep(0.005)
    print("%.3f" % ((time.monotonic() - t0) * 1000))
PY
    SYNC_P50=$(pctl 50 "$WORK/sync.ms"); SYNC_P99=$(pctl 99 "$WORK/sync.ms")
    log "sync: idle fetch cost, 10 s of A doing nothing"
    sleep 3
    ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
    r0=$(grep -c "sync round" "$LOG_A" || true); c0=$(ticks "$PID_A")
    sleep 10
    r1=$(grep -c "sync round" "$LOG_A" || true); c1=$(ticks "$PID_A")
    HZ=$(getconf CLK_TCK)
    SYNC_ROUNDS=$((r1 - r0))
    if ((SYNC_ROUNDS > 0)); then
        SYNC_IDLE_MS=$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v n="$SYNC_ROUNDS" 'BEGIN { printf "%.2f", t * 1000 / hz / n }')
    else
        SYNC_IDLE_MS=nan; fail_later "sync: A made no fetch round in 10 s"
    fi
    GIT_IDLE_MS=$(python3 - "$WORK/sync-a.git" "$SYNC_SRV" <<'PY'
import resource, subprocess, sys
repo, srv = sys.argv[1], sys.argv[2]
def cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
c0 = cpu()
for _ in range(10):
    subprocess.run(["git", "-C", repo, "fetch", "-q", "file://" + srv, "+refs/heads/*:refs/bench/heads/*"], check=True)
print("%.2f" % ((cpu() - c0) * 1000 / 10))
PY
)
    unmount_commitfs "$MNT_A" "$PID_A" "$LOG_A"
    unmount_commitfs "$MNT_B" "$PID_B" "$LOG_B"
fi

# ==================================================================== report
COLD_MARK=""; [[ $CAN_DROP -eq 1 ]] || COLD_MARK="*"
RSS_BUDGET=$(awk -v b="$CACHE_BYTES" 'BEGIN { printf "%.1f", b / 1048576 + 64 }')

ROW_FMT='%-26s %10s  %-30s %10s  %-30s %-22s %s\n'
row() { printf "$ROW_FMT" "$@"; }
table_header() {
    row "operation" "commitfs" "reference" "ref" "ratio (commitfs/ref)" "target" "result"
    row "---------" "--------" "---------" "---" "--------------------" "------" "------"
}
secs() { if [[ -n ${1:-} ]]; then printf '%s s' "$(f3 "$1")"; else printf -- '-'; fi; }
ms() { if [[ -z ${1:-} || $1 == nan ]]; then printf -- '-'; else printf '%s ms' "$(f2 "$1")"; fi; }
verdict() { # verdict OK? -> PASS/MISS (+ cold marker)
    if [[ $1 == pass ]]; then printf 'PASS%s' "${2:-}"; else printf 'MISS%s' "${2:-}"; fi
}

echo
echo "Results (${BIG_MIB} MiB big.bin, ${NFILES} files, cache ${CACHE_BYTES} B)"
table_header

if [[ $REFERENCE_ONLY == 1 ]]; then
    row "big read cold"  "-" "git cat-file blob (cold)"  "$(secs "$T_GIT_CAT")"        "-" "-" "-"
    row "big read warm"  "-" "cat tmpfs (warm)"          "$(secs "$T_TMPFS_CAT")"      "-" "-" "-"
    row "tree tar cold"  "-" "git archive|tar x (cold)"  "$(secs "$T_GIT_ARCHIVE")"    "-" "-" "-"
    row "tree tar warm"  "-" "tar tmpfs (warm)"          "$(secs "$T_TMPFS_TAR")"      "-" "-" "-"
    row "find|xargs stat cold" "-" "tmpfs (after drop)"        "$(secs "$T_TMPFS_FIND_COLD")" "-" "-" "-"
    row "find|xargs stat warm" "-" "tmpfs (warm)"              "$(secs "$T_TMPFS_FIND_WARM")" "-" "-" "-"
    row "find ${WALK_FILES}, cold" "-" "tmpfs (after drop)"        "$(secs "$T_TMPFS_WALK_COLD")" "-" "-" "-"
    row "find ${WALK_FILES}, warm" "-" "tmpfs (warm)"              "$(secs "$T_TMPFS_WALK_WARM")" "-" "-" "-"
    echo
    echo "Throughput: git cat-file (cold) $(mbps "$T_GIT_CAT") MB/s, tmpfs cat (warm) $(mbps "$T_TMPFS_CAT") MB/s"
    echo "(BENCH_REFERENCE_ONLY=1: commitfs was not measured)"
else
    # big read cold: speed vs git cat-file >= 0.8x  <=>  time ratio <= 1.25
    r=$(fdiv "$T_CF_CAT_COLD" "$T_GIT_CAT"); sp=$(fdiv "$T_GIT_CAT" "$T_CF_CAT_COLD")
    fle "$r" 1.25 && v=pass || v=miss
    row "big read cold" "$(secs "$T_CF_CAT_COLD")" "git cat-file blob (cold)" "$(secs "$T_GIT_CAT")" \
        "$(f2 "$r")x; speed vs git: $(f2 "$sp")x" "speed >= 0.8x of git" "$(verdict "$v" "$COLD_MARK")"

    r=$(fdiv "$T_CF_CAT_WARM" "$T_TMPFS_CAT"); sp=$(fdiv "$T_TMPFS_CAT" "$T_CF_CAT_WARM")
    fle "$r" 1.2 && v=pass || v=miss
    row "big read warm" "$(secs "$T_CF_CAT_WARM")" "cat tmpfs (warm)" "$(secs "$T_TMPFS_CAT")" \
        "$(f2 "$r")x; speed vs tmpfs: $(f2 "$sp")x" "time <= 1.2x tmpfs" "$(verdict "$v")"

    r=$(fdiv "$T_CF_TAR_COLD" "$T_GIT_ARCHIVE")
    fle "$r" 1.5 && v=pass || v=miss
    row "tree tar cold, ${NFILES} files" "$(secs "$T_CF_TAR_COLD")" "git archive|tar x (cold)" "$(secs "$T_GIT_ARCHIVE")" \
        "$(f2 "$r")x" "time <= 1.5x" "$(verdict "$v" "$COLD_MARK")"

    r=$(fdiv "$T_CF_TAR_WARM" "$T_TMPFS_TAR")
    fle "$r" 4 && v=pass || v=miss
    row "tree tar warm" "$(secs "$T_CF_TAR_WARM")" "tar tmpfs (warm)" "$(secs "$T_TMPFS_TAR")" \
        "$(f2 "$r")x" "time <= 4x tmpfs" "$(verdict "$v")"

    r=$(fdiv "$T_CF_FIND_COLD" "$T_TMPFS_FIND_COLD")
    row "find|xargs stat cold" "$(secs "$T_CF_FIND_COLD")" "tmpfs (after drop)" "$(secs "$T_TMPFS_FIND_COLD")" \
        "$(f2 "$r")x" "(no target)" "info$COLD_MARK"
    r=$(fdiv "$T_CF_FIND_WARM" "$T_TMPFS_FIND_WARM")
    row "find|xargs stat warm" "$(secs "$T_CF_FIND_WARM")" "tmpfs (warm)" "$(secs "$T_TMPFS_FIND_WARM")" \
        "$(f2 "$r")x" "(no target)" "info"
    r=$(fdiv "$T_CF_FIND_WARM" "$T_CF_FIND_SNAP_WARM")
    fle "$r" 1.2 && v=pass || v=miss
    row "warm walk, branch/snapshot" "$(secs "$T_CF_FIND_WARM")" "same tree as .commits/<sha>" "$(secs "$T_CF_FIND_SNAP_WARM")" \
        "$(f2 "$r")x" "time <= 1.2x" "$(verdict "$v")"
    r=$(fdiv "$T_CF_WALK_COLD" "$T_TMPFS_WALK_COLD")
    row "find ${WALK_FILES} branch, cold" "$(secs "$T_CF_WALK_COLD")" "tmpfs (after drop)" "$(secs "$T_TMPFS_WALK_COLD")" \
        "$(f2 "$r")x" "(no target)" "info"
    r=$(fdiv "$T_CF_WALK_WARM" "$T_TMPFS_WALK_WARM")
    fle "$r" 1.2 && v=pass || v=miss
    row "find ${WALK_FILES} branch, warm" "$(secs "$T_CF_WALK_WARM")" "tmpfs (warm)" "$(secs "$T_TMPFS_WALK_WARM")" \
        "$(f2 "$r")x" "time <= 1.2x" "$(verdict "$v")"
    r=$(fdiv "$T_CF_WALK_SNAP_WARM" "$T_TMPFS_WALK_WARM")
    row "find ${WALK_FILES} snapshot, warm" "$(secs "$T_CF_WALK_SNAP_WARM")" "tmpfs (warm)" "$(secs "$T_TMPFS_WALK_WARM")" \
        "$(f2 "$r")x" "(no target)" "info"

    r=$(fdiv "$RSS_BIG" "$RSS_BUDGET")
    flt "$RSS_BIG" "$RSS_BUDGET" && v=pass || v=miss
    row "peak RSS, big mount" "$RSS_BIG MiB" "cache + 64 MiB budget" "$RSS_BUDGET MiB" \
        "$(f2 "$r")x of budget" "< $RSS_BUDGET MiB" "$(verdict "$v")"
    row "peak RSS, tree (tar)" "$RSS_TREE_TAR MiB" "-" "-" "-" "(no target)" "info"
    row "peak RSS, tree (stat)" "$RSS_TREE_FIND MiB" "-" "-" "-" "(no target)" "info"

    echo
    echo "Big-file throughput (${BIG_MIB} MiB, decimal MB/s):"
    printf '  %-28s %9s MB/s\n' \
        "commitfs cold" "$(mbps "$T_CF_CAT_COLD")" \
        "commitfs warm" "$(mbps "$T_CF_CAT_WARM")" \
        "git cat-file (cold)" "$(mbps "$T_GIT_CAT")" \
        "tmpfs cat (warm)" "$(mbps "$T_TMPFS_CAT")"
    echo
    echo "Mount latency (start -> mountpoint answers): big $(f3 "$MOUNT_SECS_BIG") s, tree $(f3 "$MOUNT_SECS_TREE") s"
fi
if [[ -n $COLD_MARK ]]; then
    echo
    echo "* not root: page cache was not dropped, so \"cold\" runs only had a fresh daemon; they are NOT cold."
fi

if [[ $WRITE == 1 ]]; then
    WRITE_LABEL="${WRITE_MIB} MiB write, dd"
    echo
    echo "Write side (tree.git; saves: ${SAVES} x ${SAVE_BYTES} B + fsync of main/${SAVE_FILE}; cp -r: ${COPY_FILES} files in ${COPY_DIRS} dirs; dd: ${WRITE_MIB} MiB; settle: ${SETTLE_DESC})"
    table_header
    if [[ $REFERENCE_ONLY == 1 ]]; then
        row "save p50 (write+fsync+fsync dir)"  "-" "git CLI, 5 cmds, bare clone" "$(ms "$G_SAVE_P50")" "-" "-" "-"
        row "save p99 (write+fsync+fsync dir)"  "-" "git CLI, 5 cmds, bare clone" "$(ms "$G_SAVE_P99")" "-" "-" "-"
        row "cp -r ${COPY_FILES} files+sync" "-" "cp tmpfs + git add/commit" "$(secs "$T_REF_COPY")" "-" "-" "-"
        row "$WRITE_LABEL" "-" "dd tmpfs -> tmpfs" "$(secs "$T_TMPFS_DD")" "-" "-" "-"
        echo
        echo "Write throughput: dd tmpfs -> tmpfs $(mbps_n "$WRITE_MIB" "$T_TMPFS_DD") MB/s"
        echo "(BENCH_REFERENCE_ONLY=1: commitfs was not measured)"
    else
        # save: commitfs p50 at least 5x faster than git's  <=>  time ratio <= 0.2
        r=$(fdiv "$CF_SAVE_P50" "$G_SAVE_P50"); sp=$(fdiv "$G_SAVE_P50" "$CF_SAVE_P50")
        fle "$r" 0.2 && v=pass || v=miss
        row "save p50 (write+fsync+fsync dir)" "$(ms "$CF_SAVE_P50")" "git CLI, 5 cmds, bare clone" "$(ms "$G_SAVE_P50")" \
            "$(f2 "$r")x; speed vs git: $(f2 "$sp")x" "speed >= 5x git" "$(verdict "$v")"
        r=$(fdiv "$CF_SAVE_P99" "$G_SAVE_P99"); sp=$(fdiv "$G_SAVE_P99" "$CF_SAVE_P99")
        row "save p99 (write+fsync+fsync dir)" "$(ms "$CF_SAVE_P99")" "git CLI, 5 cmds, bare clone" "$(ms "$G_SAVE_P99")" \
            "$(f2 "$r")x; speed vs git: $(f2 "$sp")x" "(no target)" "info"

        r=$(fdiv "$T_CF_COPY" "$T_REF_COPY")
        fle "$r" 1.5 && v=pass || v=miss
        row "cp -r ${COPY_FILES} files+sync" "$(secs "$T_CF_COPY")" "cp tmpfs + git add/commit" "$(secs "$T_REF_COPY")" \
            "$(f2 "$r")x" "time <= 1.5x" "$(verdict "$v")"
        row "commits made by the cp -r" "$CF_COPY_COMMITS" "git add -A + commit" "1" "-" "(no target)" "info"

        r=$(fdiv "$T_CF_DD" "$T_TMPFS_DD"); sp=$(fdiv "$T_TMPFS_DD" "$T_CF_DD")
        fle "$r" 2 && v=pass || v=miss
        row "$WRITE_LABEL" "$(secs "$T_CF_DD")" "dd tmpfs -> tmpfs" "$(secs "$T_TMPFS_DD")" \
            "$(f2 "$r")x; speed vs tmpfs: $(f2 "$sp")x" "speed >= 0.5x tmpfs" "$(verdict "$v")"
        row "then sync (commit ${WRITE_MIB} MiB)" "$(secs "$T_CF_DD_SYNC")" "-" "-" "-" "(no target)" "info"
        flt "${OTHER_MAX:-nan}" 50 && v=pass || v=miss
        row "worst save, other branch" "${OTHER_MAX:-?} ms" "during that commit; p50" "${OTHER_P50:-?} ms" \
            "${OTHER_SAVES:-0} saves, ${OTHER_SLOW:-?} > 50 ms" "<= 50 ms" "$(verdict "$v")"
        row "worst save, repository's disk" "-" "same saves during a native dd conv=fsync" "${NATIVE_SAVE_MAX:-?} ms" \
            "$(f2 "$(fdiv "${OTHER_MAX:-nan}" "${NATIVE_SAVE_MAX:-nan}")")x" "(reference)" "info"
        r=$(fdiv "$T_CF_DDF" "$T_NATIVE_DDF"); sp=$(fdiv "$T_NATIVE_DDF" "$T_CF_DDF")
        fle "$r" 1.25 && v=pass || v=miss
        row "dd conv=fsync ${WRITE_MIB} MiB" "$(secs "$T_CF_DDF")" "same, repository's disk" "$(secs "$T_NATIVE_DDF")" \
            "$(f2 "$r")x; speed: $(f2 "$sp")x" "speed >= 0.8x" "$(verdict "$v")"
        r=$(fdiv "$T_CF_SQL" "$T_NATIVE_SQL")
        fle "$r" 2 && v=pass || v=miss
        row "$SQL_TX sqlite transactions" "$(secs "$T_CF_SQL")" "same, repository's disk" "$(secs "$T_NATIVE_SQL")" \
            "$(f2 "$r")x" "time <= 2x" "$(verdict "$v")"
        row "commits made by them" "${CF_SQL_COMMITS:-?}" "-" "-" "-" "a few" "info"
        if [[ -n ${VIM_COMMITS:-} ]]; then
            row "vim save p50 (ms)" "$VIM_P50" "-" "-" "-" "-" "info"
            if ((VIM_COMMITS == VIM_SAVES)); then v=PASS; else v=MISS; fi
            row "commits made by $VIM_SAVES vim saves" "$VIM_COMMITS" "-" "-" "-" "$VIM_SAVES" "$v"
        fi
        r=$(fdiv "$RSS_DD_GROWTH" 64)
        flt "$RSS_DD_GROWTH" 64 && v=pass || v=miss
        row "RSS growth, big write" "$RSS_DD_GROWTH MiB" "VmHWM after - VmRSS at mount" "-" \
            "$(f2 "$r")x of budget" "< 64 MiB" "$(verdict "$v")"
        r=$(fdiv "$STRESS_PEAK" "$STRESS_BOUND")
        flt "$STRESS_PEAK" "$STRESS_BOUND" && v=pass || v=miss
        row "peak anon RSS, fsstress $STRESS" "$STRESS_PEAK MiB" "SEMANTICS bound, $STRESS_PATHS paths" "$STRESS_BOUND MiB" \
            "$(f2 "$r")x of bound" "< bound" "$(verdict "$v")"

        echo
        echo "Save latency (ms, ${SAVES} saves, first included; commitfs: python3 os.open/write/fsync/close; git: 5 commands via subprocess):"
        printf '  %-28s min %8s  p50 %8s  p90 %8s  p99 %8s  max %8s\n' \
            "commitfs" "$(pctl 0 "$WORK/save-cf.ms")" "$(pctl 50 "$WORK/save-cf.ms")" "$(pctl 90 "$WORK/save-cf.ms")" \
                "$(pctl 99 "$WORK/save-cf.ms")" "$(pctl 100 "$WORK/save-cf.ms")" \
            "git command line" "$(pctl 0 "$WORK/save-ref.ms")" "$(pctl 50 "$WORK/save-ref.ms")" "$(pctl 90 "$WORK/save-ref.ms")" \
                "$(pctl 99 "$WORK/save-ref.ms")" "$(pctl 100 "$WORK/save-ref.ms")"
        echo "  commitfs commits on main after the saves (counted before unmounting): ${CF_SAVE_COMMITS:-?}"
        echo
        echo "cp -r (${COPY_FILES} files, $COPY_BYTES bytes), median of $ROUNDS rounds; commitfs time ends when \`sync main/copy\` returns (committed, durably):"
        echo "  commitfs   $T_CF_COPY_ALL s (of which cp -r itself: $T_CF_COPY_CP_ALL s)"
        echo "             commits per round: $CF_COPY_COMMITS_ALL (rev-list --count before mounting / after unmounting)"
        echo "  reference  $T_REF_COPY_ALL s"
        echo
        echo "Write throughput (${WRITE_MIB} MiB random bytes from tmpfs, dd bs=1M, decimal MB/s):"
        printf '  %-28s %9s MB/s\n' \
            "commitfs" "$(mbps_n "$WRITE_MIB" "$T_CF_DD")" \
            "tmpfs" "$(mbps_n "$WRITE_MIB" "$T_TMPFS_DD")"
        echo "  rounds (s): commitfs $T_CF_DD_ALL, tmpfs $T_TMPFS_DD_ALL (median of $ROUNDS, interleaved)"
        echo "  commitfs: then sync main/big.out (writes the blob, commits, fsyncs) $(f3 "$T_CF_DD_SYNC") s"
        echo "  daemon RSS: $RSS_DD_START MiB after mounting, peak $RSS_DD_PEAK MiB; unmount afterwards $(f3 "$T_CF_DD_UNMOUNT") s"
    fi
fi

if [[ $SYNC == 1 && $REFERENCE_ONLY != 1 ]]; then
    echo
    echo "Sync (server and machines: bare clones of tree.git, ${NFILES} files; file://; --fetch-interval 1)"
    table_header
    row "save on A -> B reads, p50" "$(ms "$SYNC_P50")" "fetch interval + 1 s" "2000 ms" "-" "<= interval + 1 s" \
        "$(fle "$SYNC_P50" 2000 && verdict pass || verdict miss)"
    row "save on A -> B reads, p99" "$(ms "$SYNC_P99")" "fetch interval + 1 s" "2000 ms" "-" "<= interval + 1 s" \
        "$(fle "$SYNC_P99" 2000 && verdict pass || verdict miss)"
    row "idle fetch, CPU per round" "$(ms "$SYNC_IDLE_MS")" "git fetch (CLI), CPU" "$(ms "$GIT_IDLE_MS")" \
        "$(f2 "$(fdiv "$SYNC_IDLE_MS" "$GIT_IDLE_MS")")x" "(no target)" "info"
    echo "  ($SYNC_SAVES saves; $SYNC_ROUNDS idle fetch rounds of A in 10 s)"
fi

if ((${#FAILURES[@]} > 0)); then
    echo
    echo "FAILURES:"
    printf '  - %s\n' "${FAILURES[@]}"
    exit 1
fi
exit 0
