# format/: the image library, libvdisk.a
LIB_SRCS += format/errors.c format/io.c format/driver.c format/image.c format/chain.c \
	format/raw.c format/vdk.c format/vdk-map.c format/vdk-snapshot.c format/vdk-check.c format/vdk-crypt.c format/vdk-keys.c \
	format/pool.c
# The foreign-format readers (vmdk, qcow2, vhd, vhdx) add themselves here.
-include format/foreign.mk
