#!/usr/bin/env python3
"""Writes the seed corpora of the stream fuzzers (tests/fuzz/corpus/).

Each seed is one option byte (bit 0: require checksums, bit 1: a small
record limit, bit 2: a placer, bit 3: do not read the framing) followed
by a small stream, hand-built here so that the seeds cover HVM and PV
streams, every page type, padding, optional and checksum records, and
the framing: libxl's stream and xl's save file (JSON and .cfg configs,
optional data xl skips, CHECKPOINT_END, emulator and optional libxl
records); the zlib target gets the same streams gzipped.
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


def checksummed(records, after_checkpoint=b""):
    """Adds XTK_CHECKSUM records after the headers and before
    CHECKPOINT/END, as libxtk's writer does; after_checkpoint (libxl's
    CHECKPOINT_END in a framed stream) follows each CHECKPOINT, inside the
    next checksum's window."""
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
        if rtype == 0x0E:
            r += after_checkpoint
        out += r
        crc, covered = zlib.crc32(r, crc), covered + len(r)
    return out


def libxl_header(options=0):
    return struct.pack(">QII", 0x4C6962786C466D74, 2, options)


def libxl_framed(stream, after_checkpoint=b"", after_end=b""):
    """A bare stream in libxl framing: LIBXC_CONTEXT before it, a
    CHECKPOINT_END after each CHECKPOINT (after_checkpoint first), the
    libxl END after its END (after_end first)."""
    out, off = bytearray(stream[:40]), 40
    while off < len(stream):
        rtype, length = struct.unpack_from("<II", stream, off)
        n = 8 + length + (-length % 8)
        out += stream[off:off + n]
        off += n
        if rtype == 0x0E:
            out += after_checkpoint + record(4)
        elif rtype == 0x00:
            out += after_end + record(0)
    return libxl_header() + record(1) + bytes(out)


def xl_header(config, json=True, tail=b""):
    optional = struct.pack("<I", len(config)) + config + tail
    flags = 2 | (1 if json and config else 0)
    return (b"Xen saved domain, xl format\n \0 \r"
            + struct.pack("<IIII", 0x01020304, flags, 0, len(optional))
            + optional)


JSON = b'{"c_info": {"type": "pvh", "name": "guest"}}\0'
TEXT = b'name = "guest"\nmemory = 16\n'


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
    yield "heartbeat", 0, hvm + b"".join(hvm_records()[:-1] + [
        record(0x80580002, struct.pack("<IIII", 1, 1, 5000, 0)),
        hvm_records()[-1]])
    yield "checksummed", 1, checksummed(hvm_records())
    plain = hvm + b"".join(hvm_records())
    emulator = record(3, struct.pack("<II", 2, 0) + b"qemu state")
    xenstore = record(2, struct.pack("<II", 2, 0) + b"key\0value\0")
    yield "libxl", 0, libxl_framed(plain)
    yield "xl-json", 0, xl_header(JSON) + libxl_framed(plain)
    yield "xl-text", 4, xl_header(TEXT, json=False) + libxl_framed(plain)
    yield "xl-no-config", 0, xl_header(b"") + libxl_framed(plain)
    yield "xl-tail", 0, (xl_header(JSON, tail=b"newer xl") +
                         libxl_framed(plain))
    yield "xl-emulator", 0, xl_header(JSON) + libxl_framed(
        plain, after_checkpoint=xenstore + emulator,
        after_end=emulator + record(0x80000001, b"opt"))
    yield "xl-checksummed", 1, (xl_header(JSON) + libxl_header() + record(1)
                                + checksummed(hvm_records(), record(4))
                                + record(0))
    yield "xl-unframed", 8, xl_header(JSON) + libxl_framed(plain)


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
