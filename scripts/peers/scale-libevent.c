// loop-bench's `scale fds` workload on libevent, with a chosen backend: N idle
// descriptors (unbound UDP sockets, which never become readable) registered for
// reading, and one socketpair whose read callback takes the byte and sends it back
// while events remain, so every loop iteration dispatches one event.
//
//   scale-libevent select|epoll [--counts 10,100,1000] [--events 200000] [--runs 3] [--max-ms 500]
// Prints per N: "result n=N ns_per_event=..." (one line per run), or
// "refused n=N fd=F limit=L" when the backend cannot take that many.
#define _GNU_SOURCE
#include <errno.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int left, pair[2];

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void ball_cb(evutil_socket_t fd, short which, void *arg) {
    (void)which; (void)arg;
    unsigned char ch;
    if (recv(fd, &ch, 1, 0) != 1) return;
    if (--left > 0) send(pair[1], &ch, 1, 0);
}

static void idle_cb(evutil_socket_t fd, short which, void *arg) { (void)fd; (void)which; (void)arg; }

// ns for `events` dispatched events, or for those done when max_ms ran out (*done).
static int64_t run(struct event_base *base, int events, int max_ms, int *done) {
    left = events;
    int64_t start = now_ns(), deadline = start + (int64_t)max_ms * 1000000;
    send(pair[1], "x", 1, 0);
    for (int polls = 1; left > 0; polls++) {
        event_base_loop(base, EVLOOP_ONCE);
        if ((polls & 255) == 0 && now_ns() >= deadline) break;
    }
    int64_t elapsed = now_ns() - start;
    *done = events - (left > 0 ? left : 0);
    if (*done < 1) *done = 1;
    left = 0;
    unsigned char ch;
    while (recv(pair[0], &ch, 1, MSG_DONTWAIT) == 1) {}
    return elapsed;
}

static const char *option(int argc, char **argv, const char *name, const char *fallback) {
    for (int i = 2; i + 1 < argc; i++) if (strcmp(argv[i], name) == 0) return argv[i + 1];
    return fallback;
}

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "select") != 0 && strcmp(argv[1], "epoll") != 0)) {
        fprintf(stderr, "usage: scale-libevent select|epoll [--counts LIST] [--events K] [--runs R]\n");
        return 2;
    }
    const char *method = argv[1];
    // libevent's select backend grows its sets past FD_SETSIZE, but glibc's fortified
    // FD_SET aborts the process there: refused, as the legacy loop refuses them.
    int limit = strcmp(method, "select") == 0 ? FD_SETSIZE : 1 << 30;
    char counts[256];
    snprintf(counts, sizeof counts, "%s", option(argc, argv, "--counts", "10,100,1000"));
    int events = atoi(option(argc, argv, "--events", "200000"));
    int runs = atoi(option(argc, argv, "--runs", "3"));
    int max_ms = atoi(option(argc, argv, "--max-ms", "500"));
    if (events < 1 || runs < 1) { fprintf(stderr, "--events and --runs must be >= 1\n"); return 2; }

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    for (char *part = strtok(counts, ","); part; part = strtok(NULL, ",")) {
        int n = atoi(part);
        struct event_config *config = event_config_new();
        event_config_avoid_method(config, strcmp(method, "select") == 0 ? "epoll" : "select");
        event_config_avoid_method(config, "poll");
        struct event_base *base = event_base_new_with_config(config);
        event_config_free(config);
        if (!base || strcmp(event_base_get_method(base), method) != 0) {
            fprintf(stderr, "scale-libevent: no %s backend\n", method);
            return 1;
        }
        int *fds = calloc((size_t)n, sizeof *fds);
        struct event **idle = calloc((size_t)n, sizeof *idle);
        int refused = 0;
        for (int i = 0; i < n; i++) {
            fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
            if (fds[i] < 0) { fprintf(stderr, "socket #%d: %s\n", i, strerror(errno)); return 1; }
            if (fds[i] >= limit) { printf("refused n=%d fd=%d limit=%d\n", n, fds[i], limit); refused = 1; break; }
            idle[i] = event_new(base, fds[i], EV_READ | EV_PERSIST, idle_cb, NULL);
            if (event_add(idle[i], NULL) != 0) { printf("refused n=%d fd=%d limit=?\n", n, fds[i]); refused = 1; break; }
        }
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) { perror("socketpair"); return 1; }
        struct event *ball = event_new(base, pair[0], EV_READ | EV_PERSIST, ball_cb, NULL);
        if (!refused && (pair[0] >= limit || event_add(ball, NULL) != 0)) {
            printf("refused n=%d fd=%d limit=%d\n", n, pair[0], limit);
            refused = 1;
        }
        if (!refused) {
            int done;
            run(base, events < 20000 ? events : 20000, 100, &done);  // warm-up
            for (int r = 0; r < runs; r++) {
                int64_t ns = run(base, events, max_ms, &done);
                printf("result n=%d ns_per_event=%.1f events=%d\n", n, (double)ns / done, done);
                fflush(stdout);
            }
        }
        fflush(stdout);
        event_free(ball);
        close(pair[0]);
        close(pair[1]);
        for (int i = 0; i < n; i++) {
            if (idle[i]) event_free(idle[i]);
            if (fds[i] > 0) close(fds[i]);
        }
        free(idle);
        free(fds);
        event_base_free(base);
    }
    return 0;
}
