// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * tests/corpus/livepatch/lp_cmdline.c: a correct live patch (samples/livepatch/livepatch-sample.c): /proc/cmdline prints new text.
 * Built against linux-headers-6.1.0-56-cloud-amd64 by tests/test_corpus_verify.py.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "lp_common.h"
#include <linux/seq_file.h>

static int livepatch_cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_printf(m, "%s\n", "this has been live patched");
	return 0;
}

static struct klp_func funcs[] = {
	{
		.old_name = "cmdline_proc_show",
		.new_func = livepatch_cmdline_proc_show,
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
