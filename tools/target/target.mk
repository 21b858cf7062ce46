# tools/target/: vdisk-target, the iSCSI target. It serves plain files through
# POSIX calls and does not link libvdisk; MD5 for CHAP comes from libmd.
TARGET_SRCS := tools/target/main.c tools/target/conn.c tools/target/login.c \
	tools/target/param.c tools/target/chap.c tools/target/crc32c.c \
	tools/target/config.c tools/target/backing.c tools/target/scsi.c \
	tools/target/spc.c tools/target/sbc.c tools/target/pr.c tools/target/xcopy.c
TARGET_OBJS := $(TARGET_SRCS:%.c=$(B)/%.o)
PROGS += $(B)/vdisk-target

$(B)/vdisk-target: $(TARGET_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) -lmd -lpthread
