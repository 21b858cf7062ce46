# SPDX-License-Identifier: MIT
# Helpers for the vdisk CLI tests (t01NN-*.sh), sourced after lib.sh.
#   vwrite IMG OFF COUNT BUFSIZE PATTERN   write COUNT x BUFSIZE bytes of PATTERN from OFF
#                                          through `vdisk bench -w` (the CLI has no write command)
#   owrite RAW OFF COUNT BUFSIZE PATTERN   the same on a raw oracle file through qemu-io
#   same_as IMG RAW                        IMG (any chain) reads exactly like RAW (vdisk convert + cmp,
#                                          and qemu-img compare as a second opinion)
#   json_ok FILE                           FILE is valid JSON (Perl's core JSON::PP)
#   json_eval FILE PERL-EXPR               print PERL-EXPR evaluated with $j = the decoded JSON
#   run_rc VAR CMD...                      run CMD with stdout/stderr in $T/out $T/err, exit status in VAR
#   no_crash RC                            the status is not a signal (< 128)
#   vd ARGS...                             vdisk with stdout in $T/vd.out (out of the TAP stream)

vwrite() {
	"$VDISK" bench -q -w -c "$3" -s "$4" -S "$4" -o "$2" -d 1 --pattern "$5" "$1"
}

owrite() {
	qemu-io -f raw -c "write -q -P $5 $2 $(($3 * $4))" "$1" >/dev/null
}

same_as() {
	rm -f "$T/.same.raw"
	"$VDISK" convert -O raw "$1" "$T/.same.raw" &&
		cmp -s "$T/.same.raw" "$2" &&
		qemu-img compare -q -f raw -F raw "$T/.same.raw" "$2"
}

json_ok() {
	perl -MJSON::PP -e 'local $/; decode_json(<STDIN>)' <"$1" 2>/dev/null
}

json_eval() {
	perl -MJSON::PP -e 'local $/; my $j = decode_json(<STDIN>); print eval($ARGV[0]) // "undef"' "$2" <"$1"
}

run_rc() {
	_v=$1
	shift
	"$@" >"$T/out" 2>"$T/err"
	eval "$_v=\$?"
}

no_crash() {
	[ "$1" -lt 128 ]
}

# Make a raw file of SIZE with deterministic data regions: mkraw FILE SIZE "OFF:LEN:SEED ..."
mkraw() {
	rm -f "$1"
	truncate -s "$2" "$1"
	for r in $3; do
		_o=${r%%:*}
		_r=${r#*:}
		_l=${_r%%:*}
		_s=${_r#*:}
		randfile "$T/.chunk" "$_l" "$_s"
		dd if="$T/.chunk" of="$1" bs=4096 seek=$((_o / 4096)) conv=notrunc status=none
	done
	rm -f "$T/.chunk"
}

# vd ARGS...: run vdisk with its stdout kept out of the TAP stream (in $T/vd.out).
vd() {
	"$VDISK" "$@" >"$T/vd.out"
}
