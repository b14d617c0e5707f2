#!/usr/bin/python3
"""Writes numbered 4 KiB blocks to an NBD export and records every write the server answered.

Usage: numbered_writer.py URI BLOCKS SEED LOG [MAX_WRITES]
Write i goes to block (i * 7919 + SEED) % BLOCKS and holds the pattern of (SEED, i). After the
server answers write i, "i" is appended to LOG (flushed), so whoever kills the server knows
which writes were acknowledged. Stops at MAX_WRITES (default: forever) or on the first error.
`check` mode: numbered_writer.py check URI BLOCKS SEED LOG
verifies that every block holds the last acknowledged write to it, or the single write that
was in flight after it (sent, maybe applied, never answered)."""
import struct
import sys

import nbd

BS = 4096


def block_of(i, blocks, seed):
    return (i * 7919 + seed) % blocks


def pattern(seed, i):
    head = struct.pack("<QQ", seed, i)
    return (head * (BS // len(head)))[:BS]


def write(uri, blocks, seed, log, max_writes):
    h = nbd.NBD()
    h.connect_uri(uri)
    with open(log, "a") as out:
        i = 0
        while max_writes < 0 or i < max_writes:
            try:
                h.pwrite(pattern(seed, i), block_of(i, blocks, seed) * BS)
            except nbd.Error as e:
                print(f"writer stopped at write {i}: {e}", file=sys.stderr)
                return
            out.write(f"{i}\n")
            out.flush()
            i += 1


def check(uri, blocks, seed, log):
    acked = [int(x) for x in open(log).read().split()]
    last = max(acked) if acked else -1
    expect = {}
    for i in range(last + 1):
        expect[block_of(i, blocks, seed)] = i
    in_flight = last + 1
    h = nbd.NBD()
    h.connect_uri(uri)
    bad = 0
    for b, i in sorted(expect.items()):
        got = h.pread(BS, b * BS)
        if got == pattern(seed, i):
            continue
        if block_of(in_flight, blocks, seed) == b and got == pattern(seed, in_flight):
            continue
        bad += 1
        if bad <= 5:
            print(f"block {b}: expected write {i} (acknowledged), found {got[:16].hex()}", file=sys.stderr)
    if bad:
        print(f"{bad} acknowledged writes missing out of {len(expect)} blocks", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {last + 1} acknowledged writes, {len(expect)} blocks checked")


if __name__ == "__main__":
    if sys.argv[1] == "check":
        check(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    else:
        write(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4],
              int(sys.argv[5]) if len(sys.argv) > 5 else -1)
