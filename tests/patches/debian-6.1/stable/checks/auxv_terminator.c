// SPDX-License-Identifier: GPL-2.0
/*
 * prctl(PR_SET_MM, PR_SET_MM_AUXV) with one entry and no AT_NULL: before "prctl: fix
 * PR_SET_MM_AUXV losing the forced AT_NULL terminator" (6.1.188) only the given bytes are
 * copied, so /proc/self/auxv goes on with the old vector's entries after ours; after it the
 * vector ends with the forced AT_NULL and /proc/self/auxv holds our entry and the terminator.
 */
#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(void)
{
	unsigned long aux[2] = { AT_PAGESZ, 4096 };
	char buf[4096];
	ssize_t n, total = 0;
	int fd;

	if (prctl(PR_SET_MM, PR_SET_MM_AUXV, (unsigned long)aux, sizeof(aux), 0) != 0)
		return perror("prctl(PR_SET_MM_AUXV)"), 2;
	fd = open("/proc/self/auxv", O_RDONLY);
	if (fd < 0)
		return perror("/proc/self/auxv"), 2;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		total += n;
	close(fd);
	printf("/proc/self/auxv after setting one entry: %zd bytes\n", total);
	return 0;
}
