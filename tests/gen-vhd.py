#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Build VHD and VHDX differencing chains (qemu-img writes neither).

    gen-vhd.py DIR [SEED]

From the Microsoft VHD 1.0 specification and [MS-VHDX]:

    base.vhd  <- diff1.vhd  <- diff2.vhd      dynamic base, differencing children
                                              (sector bitmaps, W2ru/W2ku locators)
    base.vhdx <- diff1.vhdx <- diff2.vhdx     dynamic base, differencing children
                                              (FULLY/PARTIALLY_PRESENT, ZERO, sector
                                              bitmaps, parent_linkage GUIDs)
    base-4k.vhdx <- diff1-4k.vhdx <- diff2-4k.vhdx   the same with 4096-byte sectors
    expect-<file>.raw                         what each file's disk reads as
    stale.vhdx                                diff1.vhdx whose parent_linkage no longer
                                              matches base.vhdx (must be refused)
    log.vhdx                                  base.vhdx with an active log GUID (refused)

The bases are also readable by qemu-img, which checks the generator itself.
"""
import os
import random
import struct
import sys
import uuid

SECTOR = 512
SIZE = 12 << 20
VHD_BLOCK = 2 << 20
MB = 1 << 20


# ---- VHD ------------------------------------------------------------------

def vhd_checksum(b, skip):
    return (~sum(x for i, x in enumerate(b) if not skip <= i < skip + 4)) & 0xffffffff


def vhd_footer(disk_type, uid, data_offset):
    f = bytearray(512)
    struct.pack_into(">8sIIQI4sI4sQQHBBI", f, 0, b"conectix", 2, 0x00010000, data_offset,
                     700000000, b"win ", 0x000a0000, b"Wi2k", SIZE, SIZE, 1024, 16, 63,
                     disk_type)
    f[68:84] = uid
    struct.pack_into(">I", f, 64, vhd_checksum(f, 64))
    return f


def write_vhd(path, blocks, parent=None):
    """blocks: {block index: (bitmap bytes (512), data bytes)}; parent: (name, uid)."""
    uid = uuid.uuid4().bytes
    nblocks = SIZE // VHD_BLOCK
    bat_off = 512 + 1024
    bat_size = -(-nblocks * 4 // SECTOR) * SECTOR
    loc_off = bat_off + bat_size
    locators = []
    if parent:
        rel = (".\\" + parent[0]).encode("utf-16-le")
        absol = ("C:\\vms\\" + parent[0]).encode("utf-16-le")
        locators = [(b"W2ru", rel), (b"W2ku", absol)]
    pos = loc_off
    loc_entries = []
    loc_data = bytearray()
    for code, data in locators:
        space = -(-len(data) // SECTOR) * SECTOR
        loc_entries.append((code, space // SECTOR, len(data), pos))
        loc_data += data + bytes(space - len(data))
        pos += space
    data_start = pos
    dh = bytearray(1024)
    struct.pack_into(">8sQQIII", dh, 0, b"cxsparse", 0xffffffffffffffff, bat_off, 0x00010000,
                     nblocks, VHD_BLOCK)
    if parent:
        dh[40:56] = parent[1]
        struct.pack_into(">I", dh, 56, 700000000)
        name = parent[0].encode("utf-16-be")[:512]
        dh[64:64 + len(name)] = name
        for i, (code, space, length, off) in enumerate(loc_entries):
            struct.pack_into(">4sIIIQ", dh, 576 + 24 * i, code, space, length, 0, off)
    struct.pack_into(">I", dh, 36, vhd_checksum(dh, 36))
    bat = [0xffffffff] * nblocks
    body = bytearray()
    sec = data_start // SECTOR
    for b in sorted(blocks):
        bm, data = blocks[b]
        bat[b] = sec
        body += bm + data
        sec += (len(bm) + len(data)) // SECTOR
    footer = vhd_footer(4 if parent else 3, uid, 512)
    with open(path, "wb") as f:
        f.write(footer)
        f.write(dh)
        f.write(struct.pack(">%dI" % nblocks, *bat) + bytes(bat_size - 4 * nblocks))
        f.write(loc_data)
        f.write(body)
        f.write(footer)
    return uid


def vhd_chain(out, rng):
    def rbytes(n):
        return rng.getrandbits(8 * n).to_bytes(n, "little")

    spb = VHD_BLOCK // SECTOR
    full = bytes([0xff]) * (spb // 8)
    # Base: dynamic, blocks 0, 1 and 5 allocated.
    disk = bytearray(SIZE)
    blocks = {}
    for b in (0, 1, 5):
        data = rbytes(VHD_BLOCK)
        blocks[b] = (full, data)
        disk[b * VHD_BLOCK:(b + 1) * VHD_BLOCK] = data
    base_uid = write_vhd(os.path.join(out, "base.vhd"), blocks)
    views = [("base.vhd", bytes(disk))]
    parent = ("base.vhd", base_uid)
    for n, layout in ((1, {0: [(0, 8), (100, 1), (4000, 96)], 3: [(0, spb)],
                           5: [(17, 200)]}),
                      (2, {0: [(4, 8), (2048, 2048)], 2: [(1, 1)], 5: [(0, 10)]})):
        blocks = {}
        for b, runs in layout.items():
            bm = bytearray(spb // 8)
            data = bytearray(VHD_BLOCK)
            for s0, cnt in runs:
                for s in range(s0, s0 + cnt):
                    bm[s // 8] |= 0x80 >> (s % 8)
                chunk = rbytes(cnt * SECTOR)
                data[s0 * SECTOR:(s0 + cnt) * SECTOR] = chunk
                off = b * VHD_BLOCK + s0 * SECTOR
                disk[off:off + cnt * SECTOR] = chunk
            blocks[b] = (bytes(bm), bytes(data))
        name = "diff%d.vhd" % n
        uid = write_vhd(os.path.join(out, name), blocks, parent)
        views.append((name, bytes(disk)))
        parent = (name, uid)
    return views


# ---- VHDX -----------------------------------------------------------------

def crc32c(data):
    table = crc32c.table
    crc = 0xffffffff
    for b in data:
        crc = table[(crc ^ b) & 0xff] ^ (crc >> 8)
    return crc ^ 0xffffffff


def _crc_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82f63b78 if c & 1 else c >> 1
        t.append(c)
    return t


crc32c.table = _crc_table()


def guid(s):
    return uuid.UUID(s).bytes_le


G_BAT = guid("2DC27766-F623-4200-9D64-115E9BFD4A08")
G_META = guid("8B7CA206-4790-4B9A-B8FE-575F050F886E")
G_FPARAMS = guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
G_VSIZE = guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
G_DISKID = guid("BECA12AB-B2E6-4523-93EF-C309E000C746")
G_LSS = guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
G_PSS = guid("CDA348C7-445D-4471-9CC9-E9885251C556")
G_PARENT = guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
G_LOCTYPE = guid("B04AEFB7-D19E-4A81-B789-25B8E9445913")
VHDX_BLOCK = MB


def vhdx_header(seq, data_write, log_guid=bytes(16)):
    h = bytearray(4096)
    struct.pack_into("<4sIQ", h, 0, b"head", 0, seq)
    h[16:32] = uuid.uuid4().bytes
    h[32:48] = data_write
    h[48:64] = log_guid
    struct.pack_into("<HHIQ", h, 64, 0, 1, MB, MB)
    struct.pack_into("<I", h, 4, crc32c(h))
    return h


def write_vhdx(path, payload, parent=None, log_guid=bytes(16), lss=SECTOR):
    """payload: {block: ("full", data) | ("zero", None) | ("partial", (bitmap_bits, data))}.
    parent: (relative name, parent's data write GUID string). Returns our data write GUID."""
    data_write = uuid.uuid4().bytes
    CHUNK_RATIO = (1 << 23) * lss // VHDX_BLOCK
    nblocks = SIZE // VHDX_BLOCK
    if parent:
        nbat = -(-nblocks // CHUNK_RATIO) * (CHUNK_RATIO + 1)
    else:
        nbat = nblocks + (nblocks - 1) // CHUNK_RATIO
    f = bytearray(4 * MB)
    f[0:8] = b"vhdxfile"
    creator = "vdiskfs gen-vhd.py".encode("utf-16-le")
    f[8:8 + len(creator)] = creator
    f[64 << 10:(64 << 10) + 4096] = vhdx_header(1, data_write, log_guid)
    f[128 << 10:(128 << 10) + 4096] = vhdx_header(2, data_write, log_guid)
    rt = bytearray(64 << 10)
    struct.pack_into("<4sIII", rt, 0, b"regi", 0, 2, 0)
    rt[16:32] = G_BAT
    struct.pack_into("<QII", rt, 32, 3 * MB, MB, 1)
    rt[48:64] = G_META
    struct.pack_into("<QII", rt, 64, 2 * MB, MB, 1)
    struct.pack_into("<I", rt, 4, crc32c(rt))
    f[192 << 10:256 << 10] = rt
    f[256 << 10:320 << 10] = rt
    # Metadata region at 2 MiB: table, then items from 64 KiB.
    items = [(G_FPARAMS, struct.pack("<II", VHDX_BLOCK, 2 if parent else 0), 4),
             (G_VSIZE, struct.pack("<Q", SIZE), 6),
             (G_DISKID, uuid.uuid4().bytes_le, 6),
             (G_LSS, struct.pack("<I", lss), 6),
             (G_PSS, struct.pack("<I", 4096), 6)]
    if parent:
        kv = [("parent_linkage", parent[1]), ("relative_path", ".\\" + parent[0]),
              ("absolute_win32_path", "C:\\vms\\" + parent[0])]
        hdr = bytearray(G_LOCTYPE + struct.pack("<HH", 0, len(kv)))
        strings = bytearray()
        base = 20 + 12 * len(kv)
        ents = bytearray()
        for k, v in kv:
            kb, vb = k.encode("utf-16-le"), v.encode("utf-16-le")
            ko = base + len(strings)
            strings += kb
            vo = base + len(strings)
            strings += vb
            ents += struct.pack("<IIHH", ko, vo, len(kb), len(vb))
        items.append((G_PARENT, bytes(hdr + ents + strings), 4))
    meta = bytearray(MB)
    struct.pack_into("<8sHH", meta, 0, b"metadata", 0, len(items))
    off = 64 << 10
    for i, (g, data, flags) in enumerate(items):
        e = 32 + 32 * i
        meta[e:e + 16] = g
        struct.pack_into("<III", meta, e + 16, off, len(data), flags)
        meta[off:off + len(data)] = data
        off += -(-len(data) // 4096) * 4096
    f[2 * MB:3 * MB] = meta
    bat = [0] * nbat
    body = bytearray()
    next_off = 4 * MB
    sbm = None
    for b in sorted(payload):
        kind, val = payload[b]
        idx = b + b // CHUNK_RATIO
        if kind == "zero":
            bat[idx] = 2
            continue
        if kind == "partial":
            bits, data = val
            if sbm is None:
                sbm = bytearray(MB)
            spb = VHDX_BLOCK // lss
            for s in bits:
                n = (b % CHUNK_RATIO) * spb + s
                sbm[n // 8] |= 1 << (n % 8)
            bat[idx] = next_off | 7
        else:
            data = val
            bat[idx] = next_off | 6
        body += data
        next_off += VHDX_BLOCK
    if sbm is not None:
        bat[CHUNK_RATIO] = next_off | 6
        body += sbm
        next_off += MB
    batb = struct.pack("<%dQ" % nbat, *bat)
    f[3 * MB:3 * MB + len(batb)] = batb
    with open(path, "wb") as out:
        out.write(f)
        out.write(body)
    return "{%s}" % str(uuid.UUID(bytes_le=data_write)).upper()


def vhdx_chain(out, rng, lss=SECTOR, sfx=""):
    def rbytes(n):
        return rng.getrandbits(8 * n).to_bytes(n, "little")

    spb = VHDX_BLOCK // lss
    disk = bytearray(SIZE)
    payload = {}
    for b in (0, 1, 7, 11):
        data = rbytes(VHDX_BLOCK)
        payload[b] = ("full", data)
        disk[b * VHDX_BLOCK:(b + 1) * VHDX_BLOCK] = data
    payload[3] = ("zero", None)
    link = write_vhdx(os.path.join(out, "base%s.vhdx" % sfx), payload, lss=lss)
    if not sfx:
        write_vhdx(os.path.join(out, "log.vhdx"), payload, log_guid=uuid.uuid4().bytes)
    views = [("base%s.vhdx" % sfx, bytes(disk))]
    parent = ("base%s.vhdx" % sfx, link)
    for n, layout in ((1, {0: [(0, 8), (100, 1), (1000, 24)], 2: "full", 7: "zero",
                           11: [(2047, 1)]}),
                      (2, {0: [(4, 8)], 1: [(0, spb)], 3: "full", 11: "zero"})):
        payload = {}
        for b, runs in layout.items():
            if runs == "zero":
                payload[b] = ("zero", None)
                disk[b * VHDX_BLOCK:(b + 1) * VHDX_BLOCK] = bytes(VHDX_BLOCK)
            elif runs == "full":
                data = rbytes(VHDX_BLOCK)
                payload[b] = ("full", data)
                disk[b * VHDX_BLOCK:(b + 1) * VHDX_BLOCK] = data
            else:
                data = bytearray(VHDX_BLOCK)
                bits = []
                for s0, cnt in runs:
                    s0, cnt = s0 * SECTOR // lss, max(1, cnt * SECTOR // lss)
                    chunk = rbytes(cnt * lss)
                    data[s0 * lss:(s0 + cnt) * lss] = chunk
                    off = b * VHDX_BLOCK + s0 * lss
                    disk[off:off + cnt * lss] = chunk
                    bits += range(s0, s0 + cnt)
                payload[b] = ("partial", (bits, bytes(data)))
        name = "diff%d%s.vhdx" % (n, sfx)
        link = write_vhdx(os.path.join(out, name), payload, parent, lss=lss)
        views.append((name, bytes(disk)))
        if n == 1 and not sfx:
            # The same child, but pointing at a parent that has since changed.
            write_vhdx(os.path.join(out, "stale.vhdx"), payload,
                       ("base.vhdx", "{00000000-1111-2222-3333-444444444444}"))
        parent = (name, link)
    return views


def main():
    out = sys.argv[1]
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    os.makedirs(out, exist_ok=True)
    for name, data in vhd_chain(out, rng) + vhdx_chain(out, rng) + \
            vhdx_chain(out, rng, 4096, "-4k"):
        with open(os.path.join(out, "expect-%s.raw" % name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
