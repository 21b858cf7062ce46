#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Build an ESXi-style VMDK snapshot chain that qemu-img cannot write.

    gen-vmdk.py DIR [SEED]

Writes, from the formats as VMware documents them ("Virtual Disk Format 5.0":
the COWD sparse header; seSparse as ESXi writes it and qemu reads it):

    vm.vmdk + vm-flat.vmdk                 base: createType "vmfs", a VMFS flat extent
    vm-000001.vmdk + vm-000001-delta.vmdk  snapshot 1: createType "vmfsSparse", COWD redo log
    vm-000002.vmdk + vm-000002-sesparse.vmdk  current: createType "seSparse"
    vm.vmsd                                names: vm.vmdk -> "before upgrade",
                                           vm-000001.vmdk -> "after upgrade"
    expect-vm.raw, expect-000001.raw, expect-000002.raw   what each layer's disk reads as
    expect-names.txt                       "file<TAB>name<TAB>created" per named layer

Each delta records parentFileNameHint and the parent's CID in parentCID.
"""
import os
import random
import struct
import sys

SECTOR = 512
SIZE = 24 << 20                     # virtual size: 24 MiB (spans 2 COWD grain tables)
COWD_GRAIN = 8                      # sectors per grain (4 KiB)
COWD_GTES = 4096
SE_GRAIN = 8                        # seSparse: fixed 4 KiB grains
SE_GT_SECTORS = 64                  # seSparse: 4096 entries of 8 bytes per grain table
SE_GTES = SE_GT_SECTORS * SECTOR // 8


def descriptor(cid, parent_cid, create_type, extent, parent=None):
    lines = ["# Disk DescriptorFile", "version=1", "encoding=\"UTF-8\"",
             "CID=%08x" % cid, "parentCID=%08x" % parent_cid,
             "createType=\"%s\"" % create_type]
    if parent:
        lines.append("parentFileNameHint=\"%s\"" % parent)
    lines += ["", "# Extent description", extent, "", "# The Disk Data Base", "#DDB", "",
              "ddb.adapterType = \"lsilogic\"", "ddb.virtualHWVersion = \"14\"",
              "ddb.uuid = \"60 00 C2 9a 1b 2c 3d 4e-5f 60 71 82 93 a4 b5 c6\"", ""]
    return "\n".join(lines)


def write_cowd(path, grains):
    """grains: {grain index: 4 KiB bytes}. The COWD header is 4 sectors (2048 bytes)."""
    nsec = SIZE // SECTOR
    gd_entries = -(-nsec // (COWD_GRAIN * COWD_GTES))
    gd_off = 4
    gd_sectors = -(-gd_entries * 4 // SECTOR)
    next_sec = gd_off + gd_sectors
    gts = {}
    for g in sorted(grains):
        gdi = g // COWD_GTES
        if gdi not in gts:
            gts[gdi] = next_sec
            next_sec += COWD_GTES * 4 // SECTOR
    gt_data = {gdi: [0] * COWD_GTES for gdi in gts}
    body = bytearray()
    data_start = next_sec
    for g in sorted(grains):
        gt_data[g // COWD_GTES][g % COWD_GTES] = next_sec
        body += grains[g]
        next_sec += COWD_GRAIN
    hdr = bytearray(2048)
    struct.pack_into("<4sIIIIIII", hdr, 0, b"COWD", 1, 3, nsec, COWD_GRAIN, gd_off,
                     gd_entries, next_sec)
    # u.child.parentFileName (1024 bytes) + parentGeneration, then generation, name...
    struct.pack_into("<1024sI", hdr, 32, b"vm.vmdk", 1)
    struct.pack_into("<I", hdr, 32 + 1028, 2)
    with open(path, "wb") as f:
        f.write(hdr)
        gd = bytearray(gd_sectors * SECTOR)
        for gdi, sec in gts.items():
            struct.pack_into("<I", gd, 4 * gdi, sec)
        f.write(gd)
        for gdi in sorted(gts):
            f.write(struct.pack("<%dI" % COWD_GTES, *gt_data[gdi]))
        assert f.tell() == data_start * SECTOR
        f.write(body)


def write_sesparse(path, grains, zeroes, unmapped):
    """grains: {grain: 4 KiB bytes}; zeroes/unmapped: grain indexes that read as zero."""
    nsec = SIZE // SECTOR
    ngt = -(-nsec // (SE_GRAIN * SE_GTES))
    gd_off, gd_size = 8, max(1, -(-ngt * 8 // SECTOR))
    gt_off = gd_off + gd_size
    used = sorted(set(g // SE_GTES for g in list(grains) + list(zeroes) + list(unmapped)))
    gt_index = {gdi: i for i, gdi in enumerate(used)}
    gt_size = len(used) * SE_GT_SECTORS
    fb_off = gt_off + gt_size
    bm_off = fb_off + 1
    grains_off = bm_off + 1
    grains_size = len(grains) * SE_GRAIN
    hdr = bytearray(512)
    struct.pack_into("<QQQQQQ", hdr, 0, 0xcafebabe, 0x0000000200000001, nsec, SE_GRAIN,
                     SE_GT_SECTORS, 0)
    struct.pack_into("<16Q", hdr, 80,
                     1, 1,                    # volatile header
                     2, 1,                    # journal header
                     3, 1,                    # journal
                     gd_off, gd_size,
                     gt_off, gt_size,
                     fb_off, 1,               # free bitmap
                     bm_off, 1,               # backmap
                     grains_off, grains_size)
    vol = bytearray(512)
    struct.pack_into("<QQQQ", vol, 0, 0xcafecafe, len(used), 1, 0)
    gd = bytearray(gd_size * SECTOR)
    for gdi, i in gt_index.items():
        struct.pack_into("<Q", gd, 8 * gdi, 0x1000000000000000 | i)
    gts = [[0] * SE_GTES for _ in used]
    body = bytearray()
    for n, g in enumerate(sorted(grains)):
        lo, hi = n & 0xfff, n >> 12
        gts[gt_index[g // SE_GTES]][g % SE_GTES] = (0x3 << 60) | (lo << 48) | hi
        body += grains[g]
    for g in zeroes:
        gts[gt_index[g // SE_GTES]][g % SE_GTES] = 0x2000000000000000
    for g in unmapped:
        gts[gt_index[g // SE_GTES]][g % SE_GTES] = 0x1000000000000000
    with open(path, "wb") as f:
        f.write(hdr)
        f.write(vol)
        f.write(bytes(SECTOR * (gd_off - 2)))
        f.write(gd)
        for t in gts:
            f.write(struct.pack("<%dQ" % SE_GTES, *t))
        f.write(bytes(2 * SECTOR))
        assert f.tell() == grains_off * SECTOR
        f.write(body)


def main():
    out = sys.argv[1]
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    os.makedirs(out, exist_ok=True)
    G = COWD_GRAIN * SECTOR

    def rbytes(n):
        return rng.getrandbits(8 * n).to_bytes(n, "little")

    # Base: a VMFS flat extent, data in the first 6 MiB and the last MiB.
    base = bytearray(SIZE)
    base[0:6 << 20] = rbytes(6 << 20)
    base[SIZE - (1 << 20):] = rbytes(1 << 20)
    with open(os.path.join(out, "vm-flat.vmdk"), "wb") as f:
        f.write(base)
    cid0, cid1, cid2 = 0x1a2b3c4d, 0x5e6f7081, 0x92a3b4c5
    with open(os.path.join(out, "vm.vmdk"), "w") as f:
        f.write(descriptor(cid0, 0xffffffff, "vmfs",
                           "RW %d VMFS \"vm-flat.vmdk\"" % (SIZE // SECTOR)))

    # Snapshot 1: a COWD redo log with grains here and there (both grain tables).
    s1 = bytearray(base)
    grains = {}
    for g in [0, 1, 5, 100, 101, 102, 1000, 4095, 4096, 4097, 5000, SIZE // G - 1]:
        grains[g] = rbytes(G)
        s1[g * G:(g + 1) * G] = grains[g]
    write_cowd(os.path.join(out, "vm-000001-delta.vmdk"), grains)
    with open(os.path.join(out, "vm-000001.vmdk"), "w") as f:
        f.write(descriptor(cid1, cid0, "vmfsSparse",
                           "RW %d VMFSSPARSE \"vm-000001-delta.vmdk\"" % (SIZE // SECTOR),
                           "vm.vmdk"))

    # Current: seSparse with data, zero and unmapped grains.
    s2 = bytearray(s1)
    grains = {}
    for g in [1, 2, 3, 64, 4096, 4098, 6000]:
        grains[g] = rbytes(G)
        s2[g * G:(g + 1) * G] = grains[g]
    zeroes, unmapped = [5, 4097], [100]
    for g in zeroes + unmapped:
        s2[g * G:(g + 1) * G] = bytes(G)
    write_sesparse(os.path.join(out, "vm-000002-sesparse.vmdk"), grains, zeroes, unmapped)
    with open(os.path.join(out, "vm-000002.vmdk"), "w") as f:
        f.write(descriptor(cid2, cid1, "seSparse",
                           "RW %d SESPARSE \"vm-000002-sesparse.vmdk\"" % (SIZE // SECTOR),
                           "vm-000001.vmdk"))

    # The VM's snapshot database: times in microseconds, split in two signed 32-bit halves.
    t0, t1 = 1700000000123456, 1710000000654321

    def hl(t):
        hi, lo = t >> 32, t & 0xffffffff
        return hi, lo - (1 << 32) if lo >= 1 << 31 else lo

    (h0, l0), (h1, l1) = hl(t0), hl(t1)
    vmsd = """.encoding = "UTF-8"
snapshot.lastUID = "2"
snapshot.current = "2"
snapshot0.uid = "1"
snapshot0.filename = "vm-Snapshot1.vmsn"
snapshot0.displayName = "before upgrade"
snapshot0.description = ""
snapshot0.createTimeHigh = "%d"
snapshot0.createTimeLow = "%d"
snapshot0.numDisks = "1"
snapshot0.disk0.fileName = "vm.vmdk"
snapshot0.disk0.node = "scsi0:0"
snapshot1.uid = "2"
snapshot1.parent = "1"
snapshot1.filename = "vm-Snapshot2.vmsn"
snapshot1.displayName = "after upgrade"
snapshot1.createTimeHigh = "%d"
snapshot1.createTimeLow = "%d"
snapshot1.numDisks = "1"
snapshot1.disk0.fileName = "vm-000001.vmdk"
snapshot1.disk0.node = "scsi0:0"
snapshot.numSnapshots = "2"
""" % (h0, l0, h1, l1)
    with open(os.path.join(out, "vm.vmsd"), "w") as f:
        f.write(vmsd)
    for name, data in (("expect-vm.raw", base), ("expect-000001.raw", s1),
                       ("expect-000002.raw", s2)):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    with open(os.path.join(out, "expect-names.txt"), "w") as f:
        f.write("vm.vmdk\tbefore upgrade\t%d\n" % (t0 // 1000000))
        f.write("vm-000001.vmdk\tafter upgrade\t%d\n" % (t1 // 1000000))


if __name__ == "__main__":
    main()
