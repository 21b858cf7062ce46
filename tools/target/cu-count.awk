# SPDX-License-Identifier: MIT
# Count the real results of an iscsi-test-cu run. CUnit reports a test that
# printed "[SKIPPED]" (not implemented, precondition not met) as passed, so
# this counts per test: failed if CUnit printed FAILED for it, skipped if it
# printed [SKIPPED], passed otherwise. Prints "total passed skipped failed".
function close_test() {
	if (name == "") return
	if (failed) nf++; else if (skipped) { ns++; skips = skips " " suite "." name } else np++
	name = ""
}
/^Suite: / { close_test(); suite = $2; next }
/^  Test: / {
	close_test()
	name = $2; failed = 0; skipped = 0; nt++
}
/Run Summary/ { close_test(); done = 1 }
done { next }
/\[SKIPPED\]/ { skipped = 1 }
# libiscsi's helpers that give up quietly (CU_PASS without a [SKIPPED] line)
/SWP is not changeable|device too small for|LUN is too (big|small) for/ { skipped = 1 }
/(^|\.\.\.)FAILED[ \t]*$/ { failed = 1 }
/^    [0-9]+\. [^ ]+:[0-9]+ +- / { failed = 1 }
END { close_test(); printf "%d %d %d %d\n", nt, np, ns, nf; if (ENVIRON["CU_SKIPS"] != "") print skips > ENVIRON["CU_SKIPS"] }
