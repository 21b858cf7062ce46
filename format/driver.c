// SPDX-License-Identifier: MIT
/*
 * The table of format drivers and score-based probing (after qemu's
 * bdrv_probe_all). Drivers are listed here, not registered by constructors, so
 * that linking from the static libvdisk.a can never silently drop one.
 */
#include <string.h>

#include "internal.h"

extern const struct vd_driver vd_raw_driver;
extern const struct vd_driver vd_vdk_driver;
extern const struct vd_driver vd_vmdk_driver;
extern const struct vd_driver vd_qcow2_driver;
extern const struct vd_driver vd_vhd_driver;
extern const struct vd_driver vd_vhdx_driver;
extern const struct vd_driver vd_unsupported_driver; /* foreign.c: refused by name */

const struct vd_driver *const vd_drivers[] = {
	&vd_vdk_driver,
	&vd_vmdk_driver,
	&vd_qcow2_driver,
	&vd_vhd_driver,
	&vd_vhdx_driver,
	&vd_unsupported_driver,
	&vd_raw_driver,
	NULL,
};

const struct vd_driver *
vd_driver_find(const char *name)
{
	if (strcmp(name, "vpc") == 0) {
		name = "vhd"; /* qemu's name of the format (qemu-img -f vpc) */
	}
	for (int i = 0; vd_drivers[i]; i++) {
		if (strcmp(vd_drivers[i]->name, name) == 0) {
			return vd_drivers[i];
		}
	}
	return NULL;
}
