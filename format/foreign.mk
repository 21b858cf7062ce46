# format/foreign.mk: the foreign-format readers (issue 5), included by format/format.mk.
all: $(B)/tests/foreign-cat

FOREIGN_SRCS := format/foreign.c format/vmdk.c format/qcow2.c format/vhd.c format/vhdx.c
LIB_SRCS += $(FOREIGN_SRCS)

# foreign-cat drives the readers without the core library (tests/t02NN-*.sh use it
# next to vdisk as a second path to the same drivers).
FOREIGN_CAT_OBJS := $(FOREIGN_SRCS:%.c=$(B)/%.o) $(B)/format/errors.o $(B)/format/io.o
$(B)/tests/foreign-cat: tests/foreign-cat.c $(FOREIGN_CAT_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LIBS)
