// UDP echo load generator: keeps WINDOW datagrams in flight against an echo
// server and reports round trips per second and the RTT distribution.
// Batched receive and send (recvmmsg/sendmmsg) keep the client cheaper per
// datagram than any server it measures, so the server is the bottleneck.
//
//   udp-client --port P [--window W] [--size BYTES] [--warmup-ms MS] [--ms MS]
// Prints one line: "result rtt_per_s=... p50_us=... p99_us=... samples=... lost=..."
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

int main(int argc, char **argv) {
    int port = 0, window = 1, warmup_ms = 200, ms = 1000;
    size_t size = 64;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--port")) port = atoi(v);
        else if (!strcmp(k, "--window")) window = atoi(v);
        else if (!strcmp(k, "--size")) size = (size_t)atol(v);
        else if (!strcmp(k, "--warmup-ms")) warmup_ms = atoi(v);
        else if (!strcmp(k, "--ms")) ms = atoi(v);
        else { fprintf(stderr, "udp-client: unknown option %s\n", k); return 2; }
    }
    if (port <= 0 || window < 1 || window > MAX_WINDOW || size < 8 || size > 65507) {
        fprintf(stderr, "usage: udp-client --port P [--window 1..%d] [--size 8..65507] [--warmup-ms MS] [--ms MS]\n",
                MAX_WINDOW);
        return 2;
    }

    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("connect"); return 1; }
    // A receive timeout turns lost datagrams into a refilled window instead of a
    // hang. It is long: on a VM a wake-up across CPUs now and then takes ~100 ms
    // (the host deschedules an idle vCPU), and that is a stall, not a loss.
    struct timeval timeout = {.tv_sec = 1, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
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
