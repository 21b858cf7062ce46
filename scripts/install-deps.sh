#!/bin/sh
# SPDX-License-Identifier: MIT
# Install every build and test dependency of vdiskfs from Debian packages.
# Idempotent and quiet when everything is already there.
set -e
PKGS="build-essential pkg-config clang libclang-rt-14-dev llvm
libfuse3-dev fuse3 libxxhash-dev libsodium-dev zlib1g-dev libzstd-dev libmd-dev
perl python3 bc qemu-utils libiscsi-bin fio e2fsprogs gdisk util-linux tgt iproute2
libnbd-bin qemu-system-common libqcow-utils procps psmisc strace"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing:$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
