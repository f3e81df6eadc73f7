// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * tests/corpus/livepatch/lp_clone_abi.c: __up.isra.0 (kernel/locking/semaphore.c) replaced with the C prototype of __up: IPA-SRA passes a value derived from sem in rdi, not sem. The kernel loads it; its callers would pass the wrong value.
 * Built against linux-headers-6.1.0-56-cloud-amd64 by tests/test_corpus_verify.py.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "lp_common.h"
#include <linux/semaphore.h>
#include <linux/sched/wake_q.h>

static void livepatch___up(struct semaphore *sem, struct wake_q_head *wake_q)
{
	if (list_empty(&sem->wait_list))
		return;
	OPTIMIZER_HIDE_VAR(wake_q);
}

static struct klp_func funcs[] = {
	{
		.old_name = "__up.isra.0",
		.new_func = livepatch___up,
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
