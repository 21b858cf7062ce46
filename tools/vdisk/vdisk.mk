# tools/vdisk/: the `vdisk` command-line tool, over the public API of libvdisk.a.
# tools/common/*.c (the passphrase sources) is shared with vdiskfs.
VDISK_SRCS := $(sort $(wildcard tools/vdisk/*.c)) $(sort $(wildcard tools/common/*.c))
VDISK_OBJS := $(VDISK_SRCS:%.c=$(B)/%.o)
PROGS += $(B)/vdisk

$(B)/vdisk: $(VDISK_OBJS) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(VDISK_OBJS) $(LIB) $(LDFLAGS) $(LIBS)
