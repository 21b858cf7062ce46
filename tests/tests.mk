# tests/: TAP unit tests (C) and end-to-end shell tests, run by prove.
UNIT_SRCS := $(sort $(wildcard tests/unit/t-*.c))
UNIT_TESTS := $(UNIT_SRCS:%.c=$(B)/%)
TAP_OBJ := $(B)/tests/tap.o

$(B)/tests/unit/%: tests/unit/%.c $(TAP_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(TAP_OBJ) $(LIB) $(LDFLAGS) $(LIBS)

# aead-speed: the AEADs alone, for scripts/bench-crypt.sh (the bound an encrypted image can reach).
all: $(B)/tests/aead-speed
$(B)/tests/aead-speed: tests/aead-speed.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) -lsodium -lpthread

SH_TESTS := $(sort $(wildcard tests/t[0-9]*.sh))
TESTS_ALL := $(UNIT_SRCS) $(SH_TESTS)
TESTS_ASAN ?= $(TESTS_ALL)
