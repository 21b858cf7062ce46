#!/bin/sh
# SPDX-License-Identifier: MIT
# first-touch.sh [MiB]: how fast this machine writes memory it has not touched
# yet, against the same memory a second time. On a VM that gives freed memory
# back to its host (free page reporting), the first touch costs a host fault
# per page: that is what every fresh page-cache page of a FUSE file pays, and
# why the buffered rows of bench-fs.sh depend on the machine (README).
set -eu
MIB=${1:-2048}
echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || :
sleep 3	# let freed memory be reported to the host, as between benchmark jobs
python3 - "$MIB" <<'PY'
import mmap, sys, time
n = int(sys.argv[1]) << 20
m = mmap.mmap(-1, n)
chunk = b"\1" * (16 << 20)
for label in ("first touch", "second touch"):
    t = time.monotonic()
    for off in range(0, n, len(chunk)):
        m[off:off + len(chunk)] = chunk
    dt = time.monotonic() - t
    print("%s: %.0f MiB/s" % (label, (n >> 20) / dt))
PY
