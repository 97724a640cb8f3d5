/* floor-c: a one-thread C tunnel, the floor of what a compiled fast path could reach (bench only).
 *
 *   FLOOR_SEND_KEY=<64 hex> FLOOR_RECV_KEY=<64 hex> ctun TUNNAME LOCAL_IPV4 PEER_IPV4 PORT
 *
 * Creates the TUN (no packet information), binds UDP LOCAL:PORT, sends to PEER:PORT, and moves
 * packets both ways with floor.h's seal and open from one epoll loop: what weftnet's daemon would do for
 * an established flow if that flow's whole path were C. No handshake, no rekeying, no routing: the keys
 * come from the environment. Stops on SIGTERM/SIGINT. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>

#include "floor.h"

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static int hexkey(const char *name, unsigned char key[32])
{
    const char *hex = getenv(name);
    if (!hex || strlen(hex) != 64)
        return -1;
    for (int i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        key[i] = (unsigned char)v;
    }
    return 0;
}

static int die(const char *what)
{
    perror(what);
    return 1;
}

int main(int argc, char **argv)
{
    static struct floor_state st;
    unsigned char ks[32], kr[32];
    if (argc != 5 || hexkey("FLOOR_SEND_KEY", ks) || hexkey("FLOOR_RECV_KEY", kr)) {
        fprintf(stderr, "usage: FLOOR_SEND_KEY=<64 hex> FLOOR_RECV_KEY=<64 hex> %s TUN LOCAL PEER PORT\n", argv[0]);
        return 2;
    }
    if (floor_init(&st, ks, kr))
        return die("EVP");

    int tun = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (tun < 0)
        return die("/dev/net/tun");
    struct ifreq ifr = {0};
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", argv[1]);
    if (ioctl(tun, TUNSETIFF, &ifr) < 0)
        return die("TUNSETIFF");

    int udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[4]))};
    struct sockaddr_in peer = local;
    if (udp < 0 || inet_pton(AF_INET, argv[2], &local.sin_addr) != 1 || inet_pton(AF_INET, argv[3], &peer.sin_addr) != 1)
        return die("address");
    if (bind(udp, (struct sockaddr *)&local, sizeof local) < 0)
        return die("bind");
    st.peer = peer;

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    ev.data.fd = tun;
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, tun, &ev) < 0)
        return die("epoll");
    ev.data.fd = udp;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, udp, &ev) < 0)
        return die("epoll");
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    fprintf(stderr, "ctun: %s up, %s:%s -> %s\n", argv[1], argv[2], argv[4], argv[3]);

    while (!stop) {
        struct epoll_event evs[2];
        int n = epoll_wait(ep, evs, 2, -1);
        if (n < 0 && errno != EINTR)
            return die("epoll_wait");
        for (int i = 0; i < n; i++) {
            int from = evs[i].data.fd, to_udp = from == tun;
            if (floor_pump(&st, from, to_udp ? udp : tun, to_udp) < 0)
                perror(to_udp ? "tun read" : "udp recv");
        }
    }
    fprintf(stderr, "ctun: stopped, %llu datagrams dropped\n", (unsigned long long)st.dropped);
    return 0;
}
