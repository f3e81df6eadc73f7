// SPDX-License-Identifier: GPL-2.0
/*
 * SIOCGARP naming a device with all 16 bytes of arp_dev set (no NUL): before "net: arp:
 * terminate device name before lookup" (6.1.189) the lookup reads past the name and finds no
 * device (ENODEV); after it the name is cut at 15 characters and names the device we renamed
 * "lo" to, which has no such ARP entry (ENXIO).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void)
{
	struct ifreq ifr;
	struct arpreq req;
	struct sockaddr_in *pa = (struct sockaddr_in *)&req.arp_pa;
	int s = socket(AF_INET, SOCK_DGRAM, 0);

	if (s < 0)
		return perror("socket"), 2;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	memset(ifr.ifr_newname, 'a', IFNAMSIZ - 1);
	if (ioctl(s, SIOCSIFNAME, &ifr) < 0 && errno != ENODEV)
		return perror("rename lo"), 2;
	memset(&req, 0, sizeof(req));
	pa->sin_family = AF_INET;
	pa->sin_addr.s_addr = htonl(0x0a000001);
	memset(req.arp_dev, 'a', sizeof(req.arp_dev));
	if (ioctl(s, SIOCGARP, &req) == 0)
		printf("SIOCGARP with an unterminated device name: found\n");
	else
		printf("SIOCGARP with an unterminated device name: %s\n", strerror(errno));
	return 0;
}
