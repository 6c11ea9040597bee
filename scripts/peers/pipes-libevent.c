// libevent's test/bench.c methodology on libevent's epoll backend: N
// socketpairs, A of them primed with a byte, and every read callback reads
// one byte and passes one on to the next pair until W writes have been made.
// The time of the loop turning until every byte is consumed is one run.
//
//   pipes-libevent [--pipes 100,500,1000,8000] [--active 100] [--writes 1000] [--runs 9] [--warmup 3]
// Prints per N: "result pipes=N median_us=... runs_us=a,b,..."
#define _GNU_SOURCE
#include <errno.h>
#include <event2/event.h>
#include <event2/util.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int num_pipes, num_active, num_writes;
static int count, writes, fired, failures;
static int *pipes;  // pair i: pipes[2i] is read, pipes[2i+1] is written

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void read_cb(evutil_socket_t fd, short which, void *arg) {
    (void)which;
    intptr_t next = (intptr_t)arg + 1;
    unsigned char ch;
    ssize_t n = recv(fd, &ch, 1, 0);
    if (n >= 0) count += (int)n; else failures++;
    if (writes) {
        if (next >= num_pipes) next -= num_pipes;
        if (send(pipes[2 * next + 1], "e", 1, 0) != 1) failures++;
        writes--;
        fired++;
    }
}

// One run, as bench.c's run_once: prime A pairs spread over N, then turn the
// loop (non-blocking, one pass at a time) until every byte sent was read.
static int64_t run_once(struct event_base *base) {
    int space = num_pipes / num_active * 2;
    fired = 0;
    for (int i = 0; i < num_active; i++, fired++) (void)send(pipes[i * space + 1], "e", 1, 0);
    count = 0;
    writes = num_writes;
    int64_t start = now_ns();
    do {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    } while (count != fired);
    return now_ns() - start;
}

static int compare(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    char list[256] = "100,500,1000,8000";
    int runs = 9, warmup = 3;
    num_active = 100;
    num_writes = 1000;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--pipes")) snprintf(list, sizeof list, "%s", v);
        else if (!strcmp(k, "--active")) num_active = atoi(v);
        else if (!strcmp(k, "--writes")) num_writes = atoi(v);
        else if (!strcmp(k, "--runs")) runs = atoi(v);
        else if (!strcmp(k, "--warmup")) warmup = atoi(v);
        else { fprintf(stderr, "pipes-libevent: unknown option %s\n", k); return 2; }
    }
    if (runs < 1 || num_active < 1) { fprintf(stderr, "pipes-libevent: --runs and --active must be >= 1\n"); return 2; }

    // Only epoll: the comparison is between two epoll loops.
    struct event_config *cfg = event_config_new();
    event_config_avoid_method(cfg, "select");
    event_config_avoid_method(cfg, "poll");
    struct event_base *base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (!base || strcmp(event_base_get_method(base), "epoll") != 0) {
        fprintf(stderr, "pipes-libevent: the epoll backend is not available\n");
        return 1;
    }

    for (char *save = NULL, *item = strtok_r(list, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        num_pipes = atoi(item);
        if (num_pipes < num_active) { fprintf(stderr, "pipes-libevent: N must be >= A\n"); return 2; }
        struct rlimit rl = {.rlim_cur = (rlim_t)num_pipes * 2 + 64, .rlim_max = (rlim_t)num_pipes * 2 + 64};
        struct rlimit current;
        getrlimit(RLIMIT_NOFILE, &current);
        if (current.rlim_cur < rl.rlim_cur) {
            if (current.rlim_max > rl.rlim_max) rl.rlim_max = current.rlim_max;
            if (setrlimit(RLIMIT_NOFILE, &rl) < 0) { perror("setrlimit"); return 1; }
        }

        pipes = calloc((size_t)num_pipes * 2, sizeof *pipes);
        struct event **events = calloc((size_t)num_pipes, sizeof *events);
        for (int i = 0; i < num_pipes; i++) {
            if (evutil_socketpair(AF_UNIX, SOCK_STREAM, 0, &pipes[2 * i]) < 0) { perror("socketpair"); return 1; }
            evutil_make_socket_nonblocking(pipes[2 * i]);
            evutil_make_socket_nonblocking(pipes[2 * i + 1]);
            events[i] = event_new(base, pipes[2 * i], EV_READ | EV_PERSIST, read_cb, (void *)(intptr_t)i);
            event_add(events[i], NULL);
        }
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);

        for (int i = 0; i < warmup; i++) run_once(base);
        int64_t *times = calloc((size_t)runs, sizeof *times);
        for (int i = 0; i < runs; i++) times[i] = run_once(base);

        printf("result pipes=%d", num_pipes);
        int64_t *sorted = calloc((size_t)runs, sizeof *sorted);
        memcpy(sorted, times, (size_t)runs * sizeof *times);
        qsort(sorted, (size_t)runs, sizeof *sorted, compare);
        printf(" median_us=%.1f runs_us=", sorted[runs / 2] / 1000.0);
        for (int i = 0; i < runs; i++) printf("%s%.1f", i ? "," : "", times[i] / 1000.0);
        printf(" failures=%d\n", failures);
        fflush(stdout);

        for (int i = 0; i < num_pipes; i++) {
            event_free(events[i]);
            close(pipes[2 * i]);
            close(pipes[2 * i + 1]);
        }
        free(events);
        free(pipes);
        free(times);
        free(sorted);
    }
    event_base_free(base);
    return 0;
}
