/* The floor tunnels' shared packet code (bench only; issue 16, twelfth ping round).
 *
 * Not weftnet's wire format and not a product: a data packet as small as a userspace tunnel's can be,
 * to measure what the packet work costs in C. A datagram is a 16-byte header (type 4, three zero bytes,
 * a receiver index, a 64-bit little-endian counter), then the IP packet sealed with AES-256-GCM (OpenSSL
 * EVP, the cipher weftnet's daemon picks on this CPU): nonce = 4 zero bytes and the counter, associated
 * data = the header, 16-byte tag. One key a direction; a 64-packet replay window on the counter. */
#ifndef FLOOR_H
#define FLOOR_H

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>
#include <openssl/evp.h>

#define FLOOR_HDR 16
#define FLOOR_TAG 16
#define FLOOR_MAX 65535

struct floor_state {
    EVP_CIPHER_CTX *seal, *open;
    uint64_t send_ctr;      /* next counter to send */
    uint64_t recv_top;      /* highest counter accepted, +1 (0: none yet) */
    uint64_t recv_bits;     /* bit i: counter recv_top-1-i accepted */
    unsigned char in[FLOOR_MAX + FLOOR_HDR + FLOOR_TAG], out[FLOOR_MAX + FLOOR_HDR + FLOOR_TAG];
    uint64_t dropped;
    struct sockaddr_in peer;  /* where sealed datagrams go: the socket stays unconnected, so an ICMP error
                               * (the peer not up yet) never becomes a socket error (libuv stops a watcher
                               * that reports one) */
};

static int floor_init(struct floor_state *st, const unsigned char send_key[32], const unsigned char recv_key[32])
{
    memset(st, 0, sizeof *st);
    st->seal = EVP_CIPHER_CTX_new();
    st->open = EVP_CIPHER_CTX_new();
    if (!st->seal || !st->open)
        return -1;
    /* Key schedules once; each packet sets only its nonce. */
    if (EVP_EncryptInit_ex(st->seal, EVP_aes_256_gcm(), NULL, send_key, NULL) != 1 ||
        EVP_DecryptInit_ex(st->open, EVP_aes_256_gcm(), NULL, recv_key, NULL) != 1)
        return -1;
    return 0;
}

static void floor_nonce(unsigned char nonce[12], uint64_t ctr)
{
    memset(nonce, 0, 4);
    for (int i = 0; i < 8; i++)
        nonce[4 + i] = (unsigned char)(ctr >> (8 * i));
}

/* Seal the IP packet `pkt` (len bytes) into a datagram in st->out; returns its length, or -1. */
static int floor_seal(struct floor_state *st, const unsigned char *pkt, int len)
{
    unsigned char nonce[12], *h = st->out;
    int n = 0, f = 0;
    uint64_t ctr = st->send_ctr++;
    h[0] = 4; h[1] = h[2] = h[3] = 0;
    h[4] = 1; h[5] = h[6] = h[7] = 0;
    for (int i = 0; i < 8; i++)
        h[8 + i] = (unsigned char)(ctr >> (8 * i));
    floor_nonce(nonce, ctr);
    if (EVP_EncryptInit_ex(st->seal, NULL, NULL, NULL, nonce) != 1 ||
        EVP_EncryptUpdate(st->seal, NULL, &n, h, FLOOR_HDR) != 1 ||
        EVP_EncryptUpdate(st->seal, h + FLOOR_HDR, &n, pkt, len) != 1 ||
        EVP_EncryptFinal_ex(st->seal, h + FLOOR_HDR + n, &f) != 1 ||
        EVP_CIPHER_CTX_ctrl(st->seal, EVP_CTRL_GCM_GET_TAG, FLOOR_TAG, h + FLOOR_HDR + n + f) != 1)
        return -1;
    return FLOOR_HDR + n + f + FLOOR_TAG;
}

/* Open the datagram in st->in (len bytes) into st->out; returns the packet's length, or -1 (dropped:
 * short, wrong type, forged, replayed). */
static int floor_open(struct floor_state *st, int len)
{
    unsigned char nonce[12], *h = st->in;
    int n = 0, f = 0, body = len - FLOOR_HDR - FLOOR_TAG;
    uint64_t ctr = 0;
    if (body < 0 || h[0] != 4 || h[1] || h[2] || h[3] || h[4] != 1 || h[5] || h[6] || h[7])
        goto drop;
    for (int i = 0; i < 8; i++)
        ctr |= (uint64_t)h[8 + i] << (8 * i);
    if (st->recv_top && ctr < st->recv_top) {          /* inside or below the window */
        uint64_t back = st->recv_top - 1 - ctr;
        if (back >= 64 || (st->recv_bits >> back) & 1)
            goto drop;
    }
    floor_nonce(nonce, ctr);
    if (EVP_DecryptInit_ex(st->open, NULL, NULL, NULL, nonce) != 1 ||
        EVP_DecryptUpdate(st->open, NULL, &n, h, FLOOR_HDR) != 1 ||
        EVP_DecryptUpdate(st->open, st->out, &n, h + FLOOR_HDR, body) != 1 ||
        EVP_CIPHER_CTX_ctrl(st->open, EVP_CTRL_GCM_SET_TAG, FLOOR_TAG, h + FLOOR_HDR + body) != 1 ||
        EVP_DecryptFinal_ex(st->open, st->out + n, &f) != 1)
        goto drop;
    /* Authentic: move the window only now. */
    if (!st->recv_top || ctr >= st->recv_top) {
        uint64_t shift = ctr + 1 - st->recv_top;
        st->recv_bits = st->recv_top == 0 || shift >= 64 ? 1 : (st->recv_bits << shift) | 1;
        st->recv_top = ctr + 1;
    } else {
        st->recv_bits |= (uint64_t)1 << (st->recv_top - 1 - ctr);
    }
    return n + f;
drop:
    st->dropped++;
    return -1;
}

/* Move packets until the source is empty: TUN -> UDP (to_udp) or UDP -> TUN. Returns packets moved, or -1
 * with errno set on an error other than an empty queue. */
static long floor_pump(struct floor_state *st, int from, int to, int to_udp)
{
    long moved = 0;
    for (;;) {
        ssize_t len = to_udp ? read(from, st->in, FLOOR_MAX) : recv(from, st->in, sizeof st->in, 0);
        if (len < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return moved;
            if (errno == EINTR)
                continue;
            return -1;
        }
        int n = to_udp ? floor_seal(st, st->in, (int)len) : floor_open(st, (int)len);
        if (n < 0)
            continue;
        ssize_t w = to_udp ? sendto(to, st->out, (size_t)n, 0, (struct sockaddr *)&st->peer, sizeof st->peer)
                           : write(to, st->out, (size_t)n);
        (void)w;  /* a full queue drops the packet, as a tunnel does */
        moved++;
    }
}

#endif
