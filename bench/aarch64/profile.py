#!/usr/bin/env python3
"""Instructions per function from insn_count's profile=FILE output (qemu-aarch64).

    python3 bench/aarch64/profile.py BINARY LONG.txt [SHORT.txt --tokens N] [--top K]

With SHORT and --tokens, the counts of SHORT are subtracted from LONG's and divided by N: the
instructions per decoded token when LONG generated N more tokens than SHORT from the same
prompt. Function names come from the binary's symbol table (aarch64-linux-gnu-nm; a static,
non-PIE build, so block addresses are the symbols' addresses).
"""
import argparse
import bisect
import collections
import subprocess


def symbols(binary):
    out = subprocess.run(
        ["aarch64-linux-gnu-nm", "--numeric-sort", "--demangle", "--defined-only", binary],
        check=True, capture_output=True, text=True).stdout
    addrs, names = [], []
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "tTwW":
            addrs.append(int(parts[0], 16))
            names.append(parts[2])
    return addrs, names


def per_function(path, addrs, names):
    totals = collections.Counter()
    with open(path) as f:
        for line in f:
            vaddr, insns, execs = line.split()
            i = bisect.bisect_right(addrs, int(vaddr, 16)) - 1
            name = names[i] if i >= 0 else "?"
            totals[name] += int(insns) * int(execs)
    return totals


def short_name(name):
    # Drop the hash suffix and generic arguments so one kernel reads as one line.
    name = name.rsplit("::h", 1)[0] if "::h" in name else name
    return name if len(name) <= 110 else name[:107] + "..."


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("long")
    ap.add_argument("short", nargs="?")
    ap.add_argument("--tokens", type=int, default=1)
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    addrs, names = symbols(a.binary)
    totals = per_function(a.long, addrs, names)
    if a.short:
        totals.subtract(per_function(a.short, addrs, names))
    grand = sum(v for v in totals.values() if v > 0)
    print(f"| function | instructions{' per token' if a.short else ''} | share |")
    print("|---|---|---|")
    for name, n in totals.most_common(a.top):
        print(f"| `{short_name(name)}` | {n / a.tokens:,.0f} | {100 * n / grand:.1f}% |")
    print(f"| total | {grand / a.tokens:,.0f} | 100% |")


if __name__ == "__main__":
    main()
