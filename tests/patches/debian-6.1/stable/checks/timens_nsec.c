// SPDX-License-Identifier: GPL-2.0
/*
 * A time-namespace offset with tv_nsec = 1e9: accepted before "time/namespace: Validate
 * nanosecond field in proc_timens_set_offset()" (6.1.191), EINVAL after it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

int main(void)
{
	const char *line = "monotonic 0 1000000000\n";
	int fd;

	if (unshare(CLONE_NEWTIME) < 0)
		return perror("unshare(CLONE_NEWTIME)"), 2;
	fd = open("/proc/self/timens_offsets", O_WRONLY);
	if (fd < 0)
		return perror("open timens_offsets"), 2;
	if (write(fd, line, strlen(line)) == (ssize_t)strlen(line))
		printf("timens offset with tv_nsec=1000000000: accepted\n");
	else
		printf("timens offset with tv_nsec=1000000000: %s\n", strerror(errno));
	close(fd);
	return 0;
}
