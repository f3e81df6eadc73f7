// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * tests/corpus/livepatch/lp_cold.c: x86_pmu_add.cold, the cold part GCC split from x86_pmu_add: no ftrace record, so ftrace cannot redirect it.
 * Built against linux-headers-6.1.0-56-cloud-amd64 by tests/test_corpus_verify.py.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "lp_common.h"

static void livepatch_x86_pmu_add_cold(void)
{
}

static struct klp_func funcs[] = {
	{
		.old_name = "x86_pmu_add.cold",
		.new_func = livepatch_x86_pmu_add_cold,
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
