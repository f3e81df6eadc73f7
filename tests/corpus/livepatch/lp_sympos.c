// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * tests/corpus/livepatch/lp_sympos.c: old_sympos 0 for active_show, which two static functions define (kernel/cpu.c, drivers/char/tpm/tpm-sysfs.c): the kernel refuses it as ambiguous.
 * Built against linux-headers-6.1.0-56-cloud-amd64 by tests/test_corpus_verify.py.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "lp_common.h"
#include <linux/device.h>

static ssize_t livepatch_active_show(struct device *dev, struct device_attribute *attr,
				     char *buf)
{
	return sysfs_emit(buf, "1\n");
}

static struct klp_func funcs[] = {
	{
		.old_name = "active_show",
		.new_func = livepatch_active_show,
	},
	{ }
};

static struct klp_object objs[] = {
	{
		/* name being NULL means vmlinux */
		.funcs = funcs,
	}, { }
};

LIVEPATCH_MODULE(objs);
MODULE_INFO(livepatch, "Y");
