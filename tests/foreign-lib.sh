# SPDX-License-Identifier: MIT
# Helpers for the foreign-format tests (t02NN-*.sh), sourced after lib.sh.
# The oracle is qemu-img: every image is read back through
#   - foreign-cat (tests/foreign-cat.c: the drivers alone, with its own chain walk),
#   - vdisk convert -O raw (the whole library and CLI), once vdisk is built,
# and compared byte for byte with `qemu-img convert -O raw`.
FCAT="$VDISK_BUILD/tests/foreign-cat"
[ -x "$FCAT" ] || { echo "Bail out! $FCAT not built"; exit 1; }
QI="qemu-img"

# rnd FILE BYTES: random bytes (the data written into the images).
rnd() {
	head -c "$2" /dev/urandom >"$1"
}

# qwrite IMG FMT OFF:LEN...: write fresh random data at each OFF (bytes) of length LEN.
qwrite() {
	_img=$1 _fmt=$2
	shift 2
	_cmds=""
	_i=0
	for _r in "$@"; do
		_o=${_r%%:*} _l=${_r#*:}
		_i=$((_i + 1))
		rnd "$T/.w$_i" "$_l"
		_cmds="$_cmds -c \"write -s $T/.w$_i $_o $_l\""
	done
	eval qemu-io -f "$_fmt" $_cmds "$_img" >/dev/null
	rm -f "$T"/.w*
}

# same NAME IMG [QEMU-IMG-CONVERT-OPTS...]: all readers give what qemu-img gives.
# FCAT_OPTS (e.g. "-s 0") selects an internal snapshot in foreign-cat.
same() {
	_sname=$1 _img=$2
	shift 2
	rm -f "$T/.exp" "$T/.got" "$T/.vd"
	$QI convert -U "$@" -O raw "$_img" "$T/.exp" 2>"$T/.err" || {
		ok "$_sname (qemu-img convert failed: $(cat "$T/.err"))" false
		return
	}
	# shellcheck disable=SC2086
	ok "$_sname: foreign-cat" sh -c "'$FCAT' ${FCAT_OPTS:-} '$_img' >'$T/.got' && cmp -s '$T/.exp' '$T/.got'"
	if [ -x "$VDISK" ] && [ -z "${FCAT_OPTS:-}" ]; then
		ok "$_sname: vdisk convert" sh -c "'$VDISK' convert -O raw '$_img' '$T/.vd' && cmp -s '$T/.exp' '$T/.vd'"
	fi
	rm -f "$T/.exp" "$T/.got" "$T/.vd"
}

# refuses NAME PATTERN IMG: opening fails cleanly (exit 2, no crash) with PATTERN in the message.
refuses() {
	_out=$("$FCAT" "$3" 2>&1 >/dev/null)
	_rc=$?
	ok "$1: refused ($_out)" sh -c "[ $_rc -eq 2 ] && printf '%s' \"\$1\" | grep -q -- \"\$2\"" _ "$_out" "$2"
}

# corrupt NAME IMG: reading must end with an error or data, never a crash (exit >= 128).
no_crash() {
	"$FCAT" "$2" >/dev/null 2>"$T/.err"
	_rc=$?
	ok "$1: no crash (rc=$_rc: $(head -c 200 "$T/.err"))" [ "$_rc" -lt 128 ]
	"$FCAT" -m "$2" >/dev/null 2>&1
	_rc=$?
	ok "$1: map: no crash (rc=$_rc)" [ "$_rc" -lt 128 ]
}
