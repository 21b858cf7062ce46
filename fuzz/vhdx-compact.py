#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Turn a VHDX file into the compact input form of fuzz/fuzz-vhdx.c (its first
# 320 KiB, then the first 128 KiB of each following MiB), written to OUT.
# Usage: python3 fuzz/vhdx-compact.py FILE OUT
import sys

HEAD, CHUNK, MIB = 320 << 10, 128 << 10, 1 << 20
d = open(sys.argv[1], 'rb').read()
out = bytearray(d[:HEAD])
for m in range(1, (len(d) + MIB - 1) // MIB):
    out += d[m * MIB:m * MIB + CHUNK].ljust(CHUNK, b'\0')
while len(out) > HEAD and not any(out[-CHUNK:]):
    del out[-CHUNK:]
open(sys.argv[2], 'wb').write(bytes(out))
