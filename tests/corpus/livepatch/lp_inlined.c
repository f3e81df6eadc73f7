// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * tests/corpus/livepatch/lp_inlined.c: find_process_by_pid (kernel/sched/core.c) is inlined into all its callers and has no symbol: the kernel does not find it.
 * Built against linux-headers-6.1.0-56-cloud-amd64 by tests/test_corpus_verify.py.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "lp_common.h"
#include <linux/sched.h>

static struct task_struct *livepatch_find_process_by_pid(pid_t pid)
{
	OPTIMIZER_HIDE_VAR(pid);
	return pid ? NULL : current;
}

static struct klp_func funcs[] = {
	{
		.old_name = "find_process_by_pid",
		.new_func = livepatch_find_process_by_pid,
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
