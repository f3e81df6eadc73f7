// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * tests/corpus/livepatch/lp_inline_host.c: for inline-host.patch, which changes find_process_by_pid: replaces only sched_getaffinity, one of the ten functions it is inlined into. The kernel loads it; the other nine keep the old code.
 * Built against linux-headers-6.1.0-56-cloud-amd64 by tests/test_corpus_verify.py.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "lp_common.h"
#include <linux/sched.h>
#include <linux/cpumask.h>

static long livepatch_sched_getaffinity(pid_t pid, struct cpumask *mask)
{
	OPTIMIZER_HIDE_VAR(mask);
	return pid < 0 ? -EINVAL : -ESRCH;
}

static struct klp_func funcs[] = {
	{
		.old_name = "sched_getaffinity",
		.new_func = livepatch_sched_getaffinity,
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
