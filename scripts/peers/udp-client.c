// UDP echo load generator: keeps WINDOW datagrams in flight against an echo
// server and reports round trips per second and the RTT distribution.
// Batched receive and send (recvmmsg/sendmmsg) keep the client cheaper per
// datagram than any server it measures, so the server is the bottleneck.
//
//   udp-client --port P [--host IP] [--window W] [--size BYTES] [--warmup-ms MS] [--ms MS]
//   udp-client --ping --host IP --port P [--window W] [--warmup-ms MS] [--ms MS]
// Prints one line: "result rtt_per_s=... p50_us=... p99_us=... samples=... lost=..."
//
// --ping speaks the original's UDP RPC protocol instead of echo: each of the WINDOW slots is a
// ping RPC (message type 0x11) with a 3-byte request, which the original C++ node and the
// port's nodes both answer a sender that is not in their hosts.conf with an empty reply. One
// RPC is four datagrams: the request, the server's ACK of it, the reply, and our ACK of the
// reply (without which the server would send the reply again). The header is the original's
// (UdpProtocol.h; Sources/UdpServer/Wire/DatagramHeader.swift), big-endian:
//   word 0: bits 31-24 message type, 23 ACK, 22 cancel, 21 nice, 20-0 datagram number
//   word 1: bit 31 sent by the initiator, 30 had error, 29-0 transaction id
//   word 2: message size (data datagrams only)
// rtt_per_s is then RPCs a second, and the RTT runs from the request to its reply.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cdf.h"

#define MAX_WINDOW 256

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int compare(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static unsigned char buffers[MAX_WINDOW][65536];
static struct iovec iovs[MAX_WINDOW];
static struct mmsghdr msgs[MAX_WINDOW];

// Stamps and sends `count` datagrams; each carries its send time in its first 8 bytes.
static void send_batch(int fd, int count, size_t size, int64_t stamp) {
    for (int i = 0; i < count; i++) {
        memcpy(buffers[i], &stamp, sizeof stamp);
        iovs[i].iov_len = size;
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    for (int sent = 0; sent < count;) {
        int n = sendmmsg(fd, msgs + sent, (unsigned)(count - sent), 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("sendmmsg");
            exit(1);
        }
        sent += n;
    }
}

#define PING_TYPE 0x11u
#define ACK_BIT 0x00800000u
#define INITIATOR_BIT 0x80000000u
#define HAD_ERROR_BIT 0x40000000u
#define TRANSACTION_MASK 0x3FFFFFFFu

static void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8); p[3] = (unsigned char)v;
}
static uint32_t get32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

// The ping mode's outgoing batch: requests (15 bytes) and ACKs of replies (8 bytes).
static unsigned char out_buffers[2 * MAX_WINDOW][16];
static struct iovec out_iovs[2 * MAX_WINDOW];
static struct mmsghdr out_msgs[2 * MAX_WINDOW];
static int out_count;

static void queue_request(uint32_t transaction) {
    unsigned char *b = out_buffers[out_count];
    put32(b, PING_TYPE << 24);  // datagram 0, not an ACK
    put32(b + 4, INITIATOR_BIT | transaction);
    put32(b + 8, 3);
    b[12] = b[13] = b[14] = 0;  // the probe: 3 bytes, the original's "not a host of mine" size
    out_iovs[out_count] = (struct iovec){.iov_base = b, .iov_len = 15};
    out_count++;
}

static void queue_ack(uint32_t word0, uint32_t transaction) {
    unsigned char *b = out_buffers[out_count];
    // The requester's ACK of a reply datagram carries the initiator bit.
    put32(b, (word0 & 0xFF000000u) | ACK_BIT | (word0 & 0x1FFFFFu));
    put32(b + 4, INITIATOR_BIT | transaction);
    out_iovs[out_count] = (struct iovec){.iov_base = b, .iov_len = 8};
    out_count++;
}

static void flush_batch(int fd) {
    for (int i = 0; i < out_count; i++) {
        memset(&out_msgs[i].msg_hdr, 0, sizeof out_msgs[i].msg_hdr);
        out_msgs[i].msg_hdr.msg_iov = &out_iovs[i];
        out_msgs[i].msg_hdr.msg_iovlen = 1;
    }
    for (int sent = 0; sent < out_count;) {
        int n = sendmmsg(fd, out_msgs + sent, (unsigned)(out_count - sent), 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == ECONNREFUSED) continue;  // an ICMP for an earlier datagram
            perror("sendmmsg");
            exit(1);
        }
        sent += n;
    }
    out_count = 0;
}

// WINDOW ping RPCs in flight: slot i's transaction is `generation * MAX_WINDOW + i`, so a reply
// names its slot, and a late reply of an earlier generation (a slot given up as lost) is ACKed
// but not counted.
static int run_ping(int fd, int window, int warmup_ms, int ms) {
    static uint32_t slot_transaction[MAX_WINDOW];
    static int64_t slot_sent[MAX_WINDOW];
    static unsigned char in_buffers[MAX_WINDOW][2048];
    static struct iovec in_iovs[MAX_WINDOW];
    static struct mmsghdr in_msgs[MAX_WINDOW];
    uint32_t generation = (uint32_t)(now_ns() & 0xFFFF) + 1;
    size_t capacity = 1 << 20, samples = 0;
    int64_t *rtts = malloc(capacity * sizeof *rtts);
    long lost = 0, errors = 0, acks = 0;
    int64_t start = now_ns();
    int64_t measure_from = start + (int64_t)warmup_ms * 1000000;
    int64_t measure_until = measure_from + (int64_t)ms * 1000000;
    int64_t last_progress = start;

    for (int i = 0; i < window; i++) {
        slot_transaction[i] = (generation * MAX_WINDOW + (uint32_t)i) & TRANSACTION_MASK;
        slot_sent[i] = start;
        queue_request(slot_transaction[i]);
    }
    flush_batch(fd);
    for (int64_t now = start; now < measure_until;) {
        for (int i = 0; i < window; i++) {
            in_iovs[i] = (struct iovec){.iov_base = in_buffers[i], .iov_len = sizeof in_buffers[i]};
            memset(&in_msgs[i].msg_hdr, 0, sizeof in_msgs[i].msg_hdr);
            in_msgs[i].msg_hdr.msg_iov = &in_iovs[i];
            in_msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(fd, in_msgs, (unsigned)window, MSG_WAITFORONE, NULL);
        now = now_ns();
        if (n < 0) {
            if (errno == EINTR || errno == ECONNREFUSED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) { perror("recvmmsg"); return 1; }
        }
        for (int i = 0; i < n; i++) {
            if (in_msgs[i].msg_len < 8) continue;
            const unsigned char *b = in_buffers[i];
            uint32_t word0 = get32(b), word1 = get32(b + 4);
            if (word0 & ACK_BIT || word1 & INITIATOR_BIT) {  // the server's ACK of a request
                if (now >= measure_from && now < measure_until) acks++;
                continue;
            }
            uint32_t transaction = word1 & TRANSACTION_MASK;
            queue_ack(word0, transaction);
            uint32_t slot = transaction % MAX_WINDOW;
            if (slot >= (uint32_t)window || slot_transaction[slot] != transaction) continue;  // late
            // An error reply: answered, but not with the empty reply the probe asks for.
            if (word1 & HAD_ERROR_BIT && now >= measure_from && now < measure_until) errors++;
            if (now >= measure_from && now < measure_until) {
                if (samples == capacity) rtts = realloc(rtts, (capacity *= 2) * sizeof *rtts);
                rtts[samples++] = now - slot_sent[slot];
            }
            last_progress = now;
            slot_transaction[slot] = (slot_transaction[slot] + MAX_WINDOW) & TRANSACTION_MASK;
            slot_sent[slot] = now;
            queue_request(slot_transaction[slot]);
        }
        // Nothing answered for a second (the receive timeout): the window is lost, start it again.
        if (n < 0 || now - last_progress > 1000000000) {
            for (int i = 0; i < window; i++) {
                if (now - slot_sent[i] < 1000000000) continue;
                lost++;
                slot_transaction[i] = (slot_transaction[i] + MAX_WINDOW) & TRANSACTION_MASK;
                slot_sent[i] = now;
                queue_request(slot_transaction[i]);
            }
            last_progress = now;
        }
        flush_batch(fd);
    }
    qsort(rtts, samples, sizeof *rtts, compare);
    double p50 = samples ? rtts[samples / 2] / 1000.0 : 0;
    double p99 = samples ? rtts[(size_t)(samples * 0.99)] / 1000.0 : 0;
    // acks: the server's ACKs of our requests per RPC (the original and the port both send one).
    printf("result rtt_per_s=%.0f p50_us=%.1f p99_us=%.1f samples=%zu lost=%ld errors=%ld acks_per_rpc=%.2f",
           samples / (ms / 1000.0), p50, p99, samples, lost, errors, samples ? (double)acks / samples : 0.0);
    print_cdf(rtts, samples);
    printf("\n");
    return 0;
}

int main(int argc, char **argv) {
    int port = 0, window = 1, warmup_ms = 200, ms = 1000, ping = 0;
    size_t size = 64;
    const char *host = "127.0.0.1";
    if (argc > 1 && !strcmp(argv[1], "--ping")) {
        ping = 1;
        argv++;
        argc--;
    }
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--port")) port = atoi(v);
        else if (!strcmp(k, "--host")) host = v;
        else if (!strcmp(k, "--window")) window = atoi(v);
        else if (!strcmp(k, "--size")) size = (size_t)atol(v);
        else if (!strcmp(k, "--warmup-ms")) warmup_ms = atoi(v);
        else if (!strcmp(k, "--ms")) ms = atoi(v);
        else { fprintf(stderr, "udp-client: unknown option %s\n", k); return 2; }
    }
    if (port <= 0 || window < 1 || window > MAX_WINDOW || size < 8 || size > 65507) {
        fprintf(stderr, "usage: udp-client [--ping] --port P [--host IP] [--window 1..%d] [--size 8..65507]"
                        " [--warmup-ms MS] [--ms MS]\n", MAX_WINDOW);
        return 2;
    }

    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) { fprintf(stderr, "udp-client: --host %s?\n", host); return 2; }
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("connect"); return 1; }
    // A receive timeout turns lost datagrams into a refilled window instead of a
    // hang. It is long: on a VM a wake-up across CPUs now and then takes ~100 ms
    // (the host deschedules an idle vCPU), and that is a stall, not a loss.
    struct timeval timeout = {.tv_sec = 1, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    if (ping) return run_ping(fd, window, warmup_ms, ms);
    for (int i = 0; i < MAX_WINDOW; i++) {
        iovs[i].iov_base = buffers[i];
        iovs[i].iov_len = sizeof buffers[i];
    }

    size_t capacity = 1 << 20, samples = 0;
    int64_t *rtts = malloc(capacity * sizeof *rtts);
    long lost = 0;
    int64_t start = now_ns();
    int64_t measure_from = start + (int64_t)warmup_ms * 1000000;
    int64_t measure_until = measure_from + (int64_t)ms * 1000000;

    send_batch(fd, window, size, start);
    int inflight = window;
    for (int64_t now = start; now < measure_until;) {
        for (int i = 0; i < window; i++) {
            iovs[i].iov_len = sizeof buffers[i];
            msgs[i].msg_hdr.msg_iov = &iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(fd, msgs, (unsigned)window, MSG_WAITFORONE, NULL);
        now = now_ns();
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) { perror("recvmmsg"); return 1; }
            lost += inflight;
            send_batch(fd, window, size, now);
            inflight = window;
            continue;
        }
        for (int i = 0; i < n; i++) {
            int64_t sent_at;
            memcpy(&sent_at, buffers[i], sizeof sent_at);
            if (now < measure_from || now >= measure_until) continue;
            if (samples == capacity) rtts = realloc(rtts, (capacity *= 2) * sizeof *rtts);
            rtts[samples++] = now - sent_at;
        }
        inflight -= n;
        if (inflight < 0) inflight = 0;  // a late reply to a datagram counted as lost
        send_batch(fd, window - inflight, size, now);
        inflight = window;
    }

    qsort(rtts, samples, sizeof *rtts, compare);
    double p50 = samples ? rtts[samples / 2] / 1000.0 : 0;
    double p99 = samples ? rtts[(size_t)(samples * 0.99)] / 1000.0 : 0;
    printf("result rtt_per_s=%.0f p50_us=%.1f p99_us=%.1f samples=%zu lost=%ld",
           samples / (ms / 1000.0), p50, p99, samples, lost);
    print_cdf(rtts, samples);
    printf("\n");
    return 0;
}
