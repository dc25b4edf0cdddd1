#!/usr/bin/env python3
"""A random mix of file operations, as xfstests' fsstress runs them (Debian
does not package fsstress): P processes, each in its own directory below
ROOT, each doing N operations picked at random from creat, write, append,
truncate, read, stat, readdir, mkdir, rmdir, rename, unlink, symlink, chmod,
fsync and fdatasync, on a small set of names, so that names are made,
replaced and removed again and again.

Usage: scripts/fsstress.py ROOT [-p PROCS] [-n OPS] [-s SEED]
Prints the count of each operation and of each error (errno name).
"""
import argparse
import collections
import errno
import multiprocessing
import os
import random


def work(args):
    root, idx, ops, seed = args
    rnd = random.Random(seed * 1000 + idx)
    base = os.path.join(root, "p%02d" % idx)
    os.makedirs(base, exist_ok=True)
    counts = collections.Counter()

    def name():
        depth = rnd.randrange(3)
        parts = ["d%d" % rnd.randrange(6) for _ in range(depth)]
        parts.append("f%d" % rnd.randrange(40))
        return os.path.join(base, *parts)

    def dirname():
        return os.path.join(base, *["d%d" % rnd.randrange(6) for _ in range(1 + rnd.randrange(2))])

    data = os.urandom(256 << 10)
    for _ in range(ops):
        op = rnd.choice(
            ["creat", "write", "write", "append", "truncate", "read", "read", "stat",
             "readdir", "mkdir", "rmdir", "rename", "unlink", "symlink", "chmod",
             "fsync", "fdatasync"])
        try:
            if op == "creat":
                os.close(os.open(name(), os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644))
            elif op in ("write", "append", "fsync", "fdatasync"):
                flags = os.O_CREAT | os.O_WRONLY | (os.O_APPEND if op == "append" else 0)
                fd = os.open(name(), flags, 0o644)
                try:
                    n = rnd.choice([1, 100, 4096, 65536, 200000])
                    off = rnd.randrange(1 << 20)
                    if op == "append":
                        os.write(fd, data[:n])
                    else:
                        os.pwrite(fd, data[:n], off)
                    if op == "fsync":
                        os.fsync(fd)
                    elif op == "fdatasync":
                        os.fdatasync(fd)
                finally:
                    os.close(fd)
            elif op == "truncate":
                os.truncate(name(), rnd.randrange(1 << 20))
            elif op == "read":
                with open(name(), "rb") as f:
                    while f.read(1 << 16):
                        pass
            elif op == "stat":
                os.lstat(name())
            elif op == "readdir":
                os.listdir(dirname())
            elif op == "mkdir":
                os.mkdir(dirname())
            elif op == "rmdir":
                os.rmdir(dirname())
            elif op == "rename":
                a, b = (name(), name()) if rnd.random() < 0.7 else (dirname(), dirname())
                os.rename(a, b)
            elif op == "unlink":
                os.unlink(name())
            elif op == "symlink":
                os.symlink("target-%d" % rnd.randrange(100), name())
            elif op == "chmod":
                os.chmod(name(), rnd.choice([0o644, 0o755, 0o600]))
            counts[op] += 1
        except OSError as e:
            counts["%s:%s" % (op, errno.errorcode.get(e.errno, e.errno))] += 1
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("-p", type=int, default=8)
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("-s", type=int, default=1)
    a = ap.parse_args()
    with multiprocessing.Pool(a.p) as pool:
        total = collections.Counter()
        for c in pool.map(work, [(a.root, i, a.n, a.s) for i in range(a.p)]):
            total.update(c)
    unexpected = {k: v for k, v in total.items() if ":" in k and not k.endswith(
        (":ENOENT", ":EEXIST", ":ENOTEMPTY", ":ENOTDIR", ":EISDIR", ":EINVAL", ":ELOOP"))}
    print(" ".join("%s=%d" % kv for kv in sorted(total.items())))
    if unexpected:
        print("unexpected errors:", unexpected)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
