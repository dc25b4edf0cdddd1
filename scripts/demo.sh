#!/usr/bin/env bash
# A tour of commitfs: installs what is missing, builds, makes a small demo
# repository (two branches and a tag), mounts it, lists and reads through it,
# saves two files and shows the commits, and unmounts. Everything happens in a temporary directory that is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
echo "==> cargo build --release" >&2
cargo build --release --locked -q
BIN=$PWD/target/release/commitfs

work=$(mktemp -d /tmp/commitfs-demo.XXXXXX)
mnt=$work/mnt
cleanup() {
    if mountpoint -q "$mnt" 2>/dev/null; then "$BIN" unmount "$mnt" || umount -l "$mnt"; fi
    rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; eval "$@"; }

g() { git -c user.name=Demo -c user.email=demo@example.com -c init.defaultBranch=main "$@"; }
# The demo repository: made with git in a work tree, then pushed to a bare one.
g init -q "$work/src"
(
    cd "$work/src"
    printf '# Demo\nA repository mounted as a filesystem.\n' > README.md
    mkdir -p docs && printf 'Version one of the guide.\n' > docs/guide.txt
    printf '#!/bin/sh\necho hello from commitfs\n' > hello.sh && chmod +x hello.sh
    ln -s docs/guide.txt guide
    g add -A && g commit -qm "First version"
    g tag -a v1.0 -m "Release 1.0"
    printf 'Version two of the guide.\n' > docs/guide.txt
    g commit -qam "Update the guide"
    g checkout -qb feature/search
    printf 'Search is coming.\n' > SEARCH.md
    g add -A && g commit -qm "Plan search"
    g checkout -q main
)
g clone -q --bare "$work/src" "$work/demo.git"
mkdir "$mnt"

run "$BIN" mount "$work/demo.git" "$mnt" --author "\"Demo <demo@example.com>\""
run ls -la "$mnt"
run ls -la "$mnt/main"
run cat "$mnt/main/docs/guide.txt"
run cat "$mnt/.tags/v1.0/docs/guide.txt"
run cat "$mnt/.commits/main~1/docs/guide.txt"
run ls "$mnt/feature/search"
run cat "$mnt/feature/search/SEARCH.md"
run readlink "$mnt/HEAD" "$mnt/main/guide"
run "$mnt/main/hello.sh"
run stat -c "'%A %s %y %n'" "$mnt/main/README.md"
say "git archive main | tar -t   (the same tree, from git)"
g --git-dir="$work/demo.git" archive main | tar -t
say "echo change > $mnt/.tags/v1.0/README.md   (snapshots are read-only)"
echo change > "$mnt/.tags/v1.0/README.md" || true
say "echo 'Saved through commitfs.' >> $mnt/main/README.md   (a save ...)"
before=$(g --git-dir="$work/demo.git" rev-parse main)
echo 'Saved through commitfs.' >> "$mnt/main/README.md"
# The save settles for 200 ms, then is committed: wait (up to 10 s) for main to move.
for _ in $(seq 100); do
    [[ $(g --git-dir="$work/demo.git" rev-parse main) != "$before" ]] && break
    sleep 0.1
done
say "git log -1 --stat main   (... is a commit)"
g --git-dir="$work/demo.git" log -1 --stat main
say "sed -i s/two/2/ $mnt/main/docs/guide.txt; sync $mnt/main/docs   (sync of a directory commits at once)"
sed -i s/two/2/ "$mnt/main/docs/guide.txt"
sync "$mnt/main/docs"
run g --git-dir="$work/demo.git" log --oneline -3 main
run g --git-dir="$work/demo.git" show main:docs/guide.txt
run "$BIN" status "$mnt"
run "$BIN" unmount "$mnt"
echo
echo "demo: done (mounted, listed, read, saved as commits, asked for status, unmounted)."
