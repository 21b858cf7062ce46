# SPDX-License-Identifier: MIT
# vdiskfs top-level Makefile: one non-recursive build.
#   make                 build/ (vdisk, vdiskfs, vdisk-target, libvdisk.a, unit tests)
#   make check           install deps, build, run every test (prove), then again under ASan+UBSan
#   make check-asan      only the sanitizer pass
#   make check-tsan      every test against a ThreadSanitizer build (build-tsan/)
#   make fuzz            build and run the libFuzzer harnesses for a while
#   make demo            build and show the main job on a generated example under demo/
#   make install         PREFIX=/usr/local DESTDIR=
# Subsystems add their sources in */*.mk fragments.

CC ?= cc
PREFIX ?= /usr/local
DESTDIR ?=
B ?= build
SAN ?=

CFLAGS ?= -O2 -g
CFLAGS += -std=c11 -Wall -Wextra -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -pthread -MMD -MP
CFLAGS += -Iformat
ifeq ($(WERROR),1)
CFLAGS += -Werror
endif
ifeq ($(SAN),1)
CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
ifeq ($(SAN),thread)
CFLAGS += -fsanitize=thread -fno-omit-frame-pointer
LDFLAGS += -fsanitize=thread
endif

FUSE_CFLAGS := $(shell pkg-config --cflags fuse3 2>/dev/null)
FUSE_LIBS := $(shell pkg-config --libs fuse3 2>/dev/null || echo -lfuse3)
LIBS := -lxxhash -lsodium -lz -lzstd -lmd -lpthread

# The library; fragments name it in their rules, so it is defined before them.
LIB := $(B)/libvdisk.a

# Filled in by the fragments.
LIB_SRCS :=
PROGS :=
UNIT_TESTS :=
FUZZERS :=

include format/format.mk
-include tools/vdisk/vdisk.mk
-include fs/fs.mk
-include tools/target/target.mk
-include tests/tests.mk

LIB_OBJS := $(LIB_SRCS:%.c=$(B)/%.o)

all: $(LIB) $(PROGS) $(UNIT_TESTS)

# Flags live in the makefiles: a change there rebuilds everything.
$(B)/%.o: %.c Makefile $(wildcard */*.mk tools/*/*.mk)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(EXTRA_CFLAGS_$(dir $<)) -c -o $@ $<

$(LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

deps:
	@scripts/install-deps.sh

# The normal pass runs every test; the sanitizer pass runs them again against build-asan/.
check: deps
	$(MAKE) all
	$(MAKE) B=build-asan SAN=1 all
	rm -f $(B)/skips.log build-asan/skips.log
	VDISK_BUILD=$(CURDIR)/$(B) prove -j2 --timer --failures --exec tests/run-test.sh $(TESTS_ALL)
	VDISK_BUILD=$(CURDIR)/build-asan VDISK_ASAN=1 prove -j2 --timer --failures --exec tests/run-test.sh $(TESTS_ASAN)
	@scripts/check-skips.sh

check-asan: deps
	$(MAKE) B=build-asan SAN=1 all
	rm -f build-asan/skips.log
	VDISK_BUILD=$(CURDIR)/build-asan VDISK_ASAN=1 prove -j2 --timer --failures --exec tests/run-test.sh $(TESTS_ALL)

# ThreadSanitizer: the daemons' and the library's threads, under every test. A program
# that met a race exits 66 (so the test that stops it fails), and every report is kept
# in build-tsan/tsan.PID; any report fails the target.
TSAN_ENV := TSAN_OPTIONS="log_path=$(CURDIR)/build-tsan/tsan exitcode=66 halt_on_error=0 \
	detect_deadlocks=0 report_signal_unsafe=0"
check-tsan: deps
	$(MAKE) B=build-tsan SAN=thread all
	rm -f build-tsan/skips.log build-tsan/tsan.*
	$(TSAN_ENV) VDISK_BUILD=$(CURDIR)/build-tsan VDISK_ASAN=1 prove -j2 --timer --failures \
		--exec tests/run-test.sh $(TESTS_ALL)
	@if ls build-tsan/tsan.* >/dev/null 2>&1; then \
		echo "check-tsan: ThreadSanitizer reports (build-tsan/tsan.*):"; \
		grep -h '^SUMMARY' build-tsan/tsan.*; exit 1; fi

comma := ,
# libFuzzer harnesses: fuzz/fuzz-NAME.c, built with clang against the library
# sources; a harness for the target #includes the .c files it tests.
FUZZ_CC ?= clang
FUZZ_B := build-fuzz
FUZZ_TIME ?= 60
FUZZ_SRCS := $(sort $(wildcard fuzz/fuzz-*.c))
FUZZ_BINS := $(FUZZ_SRCS:fuzz/%.c=$(FUZZ_B)/%)
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -DVD_FUZZING \
	-std=c11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -pthread -Iformat -Itools/target -Itools/common

fuzz-build: $(FUZZ_BINS)

# The library is compiled once for all harnesses (instrumented, without libFuzzer's main).
FUZZ_OBJS := $(LIB_SRCS:%.c=$(FUZZ_B)/obj/%.o)

$(FUZZ_B)/obj/%.o: %.c $(wildcard format/*.h) Makefile
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(subst -fsanitize=fuzzer$(comma),-fsanitize=fuzzer-no-link$(comma),$(FUZZ_FLAGS)) -c -o $@ $<

$(FUZZ_B)/libvdisk-fuzz.a: $(FUZZ_OBJS)
	rm -f $@
	ar rcs $@ $^

$(FUZZ_B)/%: fuzz/%.c $(FUZZ_B)/libvdisk-fuzz.a $(wildcard fuzz/*.h tools/target/*.c tools/target/*.h fs/*.c fs/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(FUZZ_B)/libvdisk-fuzz.a $(LIBS)

# Run every harness for FUZZ_TIME seconds on its corpus (fuzz/corpus/NAME, grown in build-fuzz/).
fuzz: fuzz-build
	@for f in $(FUZZ_BINS); do n=$$(basename $$f); mkdir -p $(FUZZ_B)/corpus/$$n; \
		echo "fuzz: $$n for $(FUZZ_TIME)s"; \
		$$f -max_total_time=$(FUZZ_TIME) -print_final_stats=1 $(FUZZ_B)/corpus/$$n fuzz/corpus/$$n \
			2>&1 | tail -3 || exit 1; done

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include
	install -m 0755 $(PROGS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 $(LIB) $(DESTDIR)$(PREFIX)/lib/
	install -m 0644 format/vdisk.h $(DESTDIR)$(PREFIX)/include/
	install -d $(DESTDIR)$(PREFIX)/share/doc/vdiskfs
	install -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/vdiskfs/

demo: deps
	$(MAKE) all
	@scripts/demo.sh

demo-clean:
	@scripts/demo.sh clean

clean:
	rm -rf build build-asan build-tsan build-fuzz

.PHONY: all check check-asan check-tsan deps install demo demo-clean clean fuzz fuzz-build
-include $(shell find $(B) -name '*.d' 2>/dev/null)
