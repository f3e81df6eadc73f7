// SPDX-License-Identifier: GPL-2.0
/*
 * The 32-bit settimeofday() (compat syscall 79 through int $0x80) with tv_usec = 1000000:
 * accepted before "time: Fix off-by-one in compat settimeofday() usec validation" (6.1.178),
 * EINVAL after it. A static 64-bit program can enter the ia32 syscall path with int $0x80 as
 * long as its pointers fit in 32 bits (its data sits below 4 GiB).
 */
#include <stdio.h>
#include <string.h>

static struct { int tv_sec; int tv_usec; } tv = { 1700000000, 1000000 };

int main(void)
{
	long ret;

	asm volatile("int $0x80"
		     : "=a"(ret)
		     : "a"(79L), "b"((long)(unsigned long)&tv), "c"(0L)
		     : "memory");
	if (ret == 0)
		printf("compat settimeofday with tv_usec=1000000: accepted\n");
	else
		printf("compat settimeofday with tv_usec=1000000: %s\n", strerror((int)-ret));
	return 0;
}
