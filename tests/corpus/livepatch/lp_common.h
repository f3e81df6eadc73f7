/* SPDX-License-Identifier: GPL-2.0-or-later */
/* tests/corpus/livepatch/lp_common.h: what every corpus live patch shares. */
#ifndef _LP_COMMON_H
#define _LP_COMMON_H

#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/livepatch.h>

/*
 * The rest of every sample live patch (samples/livepatch/livepatch-sample.c): the klp_patch of
 * `objects`, enabled at module init, and the license klp_enable_patch (EXPORT_SYMBOL_GPL) needs.
 */
#define LIVEPATCH_MODULE(objects)					\
	static struct klp_patch patch = {				\
		.mod = THIS_MODULE,					\
		.objs = objects,					\
	};								\
									\
	static int livepatch_init(void)					\
	{								\
		return klp_enable_patch(&patch);			\
	}								\
									\
	static void livepatch_exit(void)				\
	{								\
	}								\
									\
	module_init(livepatch_init);					\
	module_exit(livepatch_exit);					\
	MODULE_LICENSE("GPL")

#endif /* _LP_COMMON_H */
