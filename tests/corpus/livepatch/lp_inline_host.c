// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * tests/corpus/livepatch/lp_inline_host.c: for inline-host.patch, which changes find_process_by_pid: replaces only sched_getaffinity, one of the ten functions it is inlined into. The kernel loads it; the other nine keep the old code.
 * Built against linux-headers-6.1.0-56-cloud-amd64 by tests/test_corpus_verify.py.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/livepatch.h>
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

static struct klp_patch patch = {
	.mod = THIS_MODULE,
	.objs = objs,
};

static int livepatch_init(void)
{
	return klp_enable_patch(&patch);
}

static void livepatch_exit(void)
{
}

module_init(livepatch_init);
module_exit(livepatch_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
