// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * tests/corpus/livepatch/lp_init.c: quiet_kernel (init/main.c) is __init: it sits in .init.text, freed with its ftrace record after boot.
 * Built against linux-headers-6.1.0-56-cloud-amd64 by tests/test_corpus_verify.py.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "lp_common.h"

static int livepatch_quiet_kernel(char *str)
{
	return 0;
}

static struct klp_func funcs[] = {
	{
		.old_name = "quiet_kernel",
		.new_func = livepatch_quiet_kernel,
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
