// SPDX-License-Identifier: GPL-2.0
/*
 * fcntl(F_SET_RW_HINT) on an immutable file: 0 before "fcntl: refuse F_SET_RW_HINT on an
 * immutable inode" (6.1.191), EPERM after it. Needs a tmpfs (the initramfs root) for chattr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(void)
{
	const char *path = "/tmp/rw_hint_immutable";
	uint64_t hint = 2; /* RWH_WRITE_LIFE_SHORT */
	int flags, fd;

	fd = open(path, O_RDONLY | O_CREAT, 0600);
	if (fd < 0 || ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0)
		return perror("setup"), 2;
	flags |= FS_IMMUTABLE_FL;
	if (ioctl(fd, FS_IOC_SETFLAGS, &flags) < 0)
		return perror("chattr +i"), 2;
	if (fcntl(fd, F_SET_RW_HINT, &hint) == 0)
		printf("F_SET_RW_HINT on an immutable file: accepted\n");
	else
		printf("F_SET_RW_HINT on an immutable file: %s\n", strerror(errno));
	flags &= ~FS_IMMUTABLE_FL;
	ioctl(fd, FS_IOC_SETFLAGS, &flags);
	close(fd);
	unlink(path);
	return 0;
}
