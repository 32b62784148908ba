#!/usr/bin/env python3
"""Writes the seed corpora of the stream fuzzers (tests/fuzz/corpus/).

Each seed is one option byte (bit 0: require checksums, bit 1: a small
record limit) followed by a small stream, hand-built here so that the
seeds cover HVM and PV streams, every page type, padding, optional and
checksum records; the zlib target gets the same streams gzipped.
Run it from anywhere: python3 tests/fuzz/make-seeds.py
"""
import gzip
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def image_header():
    return struct.pack(">QIIHHI", 0xFFFFFFFFFFFFFFFF, 0x58454E46, 3, 0, 0, 0)


def domain_header(dtype):
    return struct.pack("<IHHII", dtype, 12, 0, 4, 17)


def record(rtype, body=b""):
    pad = (-len(body)) % 8
    return struct.pack("<II", rtype, len(body)) + body + b"\0" * pad


def page_data(entries):
    """entries: (pfn, type, fill byte or None)"""
    pfns = b"".join(struct.pack("<Q", (t << 60) | pfn) for pfn, t, _ in entries)
    pages = b"".join(bytes([f]) * 4096 for _, _, f in entries if f is not None)
    return record(0x01, struct.pack("<II", len(entries), 0) + pfns + pages)


def hvm_epoch(n):
    return (record(0x08, struct.pack("<IIQII", 0, 2000000, n, 0, 0))
            + record(0x0A, struct.pack("<IIQQ", 1, 0, 1, 0xFEFFE))
            + record(0x09, bytes(range(1, 14))))


def hvm_records():
    return [record(0x10),
            page_data([(0, 0x0, 0xAA), (1, 0xF, None), (2, 0xE, None),
                       (3, 0xD, None)]),
            hvm_epoch(0), record(0x0E),
            page_data([(5, 0xF, None)]), hvm_epoch(1), record(0x00)]


def checksummed(records):
    """Adds XTK_CHECKSUM records after the headers and before
    CHECKPOINT/END, as libxtk's writer does."""
    out = image_header() + domain_header(2)
    crc, covered = zlib.crc32(out), len(out)

    def ck():
        nonlocal crc, covered
        r = record(0x80580001, struct.pack("<IIQ", 1, crc, covered))
        crc, covered = 0, 0
        return r

    out += ck()
    for r in records:
        rtype = struct.unpack("<I", r[:4])[0]
        if rtype in (0x00, 0x0E):
            out += ck()
        out += r
        crc, covered = zlib.crc32(r, crc), covered + len(r)
    return out


def seeds():
    hvm = image_header() + domain_header(2)
    pv = image_header() + domain_header(1)
    yield "end-only", 0, hvm + record(0x10) + record(0x00)
    yield "hvm-checkpoints", 0, hvm + b"".join(hvm_records())
    yield "hvm-small-limit", 2, hvm + b"".join(hvm_records())
    yield "pv", 0, pv + b"".join([
        record(0x02, struct.pack("<BBHI", 8, 4, 0, 0)),
        record(0x03, struct.pack("<IIQ", 0, 1, 7)),
        record(0x04, struct.pack("<II", 0, 0) + b"\x11" * 24),
        page_data([(0, 0x1, 0x01), (1, 0x9, 0x02), (2, 0xF, None)]),
        record(0x08, bytes(24)), record(0x00)])
    yield "optional", 0, hvm + b"".join([
        record(0x10), record(0x80580010, b"vcpu0 state"),
        record(0x80001234, b"unknown"), record(0x00)])
    yield "checksummed", 1, checksummed(hvm_records())


def main():
    for target, wrap in (("fuzz-stream-reader", lambda b: b),
                         ("fuzz-stream-zlib",
                          lambda b: gzip.compress(b, 1, mtime=0))):
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for name, opts, data in seeds():
            with open(os.path.join(d, name), "wb") as f:
                f.write(bytes([opts]) + wrap(data))


if __name__ == "__main__":
    main()
