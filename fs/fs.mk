# fs/: vdiskfs, the FUSE filesystem.
VDISKFS_SRCS := fs/main.c fs/ops.c fs/tree.c fs/part.c fs/split.c fs/nested.c fs/fopen.c fs/fread.c fs/loop.c
# The passphrase helper is shared with the CLI; build it in once it exists.
ifneq ($(wildcard tools/common/passphrase.c),)
VDISKFS_SRCS += tools/common/passphrase.c
VDISKFS_CFLAGS += -DVDFS_HAVE_PASSPHRASE -Itools/common
endif
VDISKFS_OBJS := $(VDISKFS_SRCS:%.c=$(B)/%.o)
EXTRA_CFLAGS_fs/ = $(FUSE_CFLAGS) -Ifs $(VDISKFS_CFLAGS)

$(B)/vdiskfs: $(VDISKFS_OBJS) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(VDISKFS_OBJS) $(LIB) $(LDFLAGS) $(FUSE_LIBS) $(LIBS)

PROGS += $(B)/vdiskfs
