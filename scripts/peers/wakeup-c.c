// The bare cross-thread wake-up mechanisms the two loops are built on, with
// nothing around them: a worker thread finishes a job (sleeps 150-350 µs,
// stamps the time) and wakes the waiting thread, which measures how long the
// wake-up took. `eventfd`: the waiter is in epoll_wait on an eventfd, as the
// epoll loop. `signal`: the waiter is in pselect with SIGCHLD unblocked only
// there, and the worker sends SIGCHLD to it with tgkill, as the legacy loop.
//
//   wakeup-c --mode eventfd|signal [--samples N] [--warmup K]
// Prints "result p50_us=... p99_us=... samples=N".
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cdf.h"

static int use_signal;
static int efd;
static pid_t waiter_tid;
static sem_t job_ready;
static _Atomic int64_t stamped_at;
static volatile sig_atomic_t woken;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void on_sigchld(int signo) {
    (void)signo;
    woken = 1;
}

static void *worker(void *arg) {
    int jobs = *(int *)arg;
    unsigned seed = 12345;
    for (int i = 0; i < jobs; i++) {
        while (sem_wait(&job_ready) < 0 && errno == EINTR) {}
        usleep(150 + rand_r(&seed) % 201);
        atomic_store_explicit(&stamped_at, now_ns(), memory_order_release);
        if (use_signal) {
            syscall(SYS_tgkill, getpid(), waiter_tid, SIGCHLD);
        } else {
            uint64_t one = 1;
            if (write(efd, &one, sizeof one) != sizeof one) perror("write");
        }
    }
    return NULL;
}

static int compare(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int samples = 1000, warmup = 50;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--mode")) use_signal = !strcmp(argv[i + 1], "signal");
        else if (!strcmp(argv[i], "--samples")) samples = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[i + 1]);
        else { fprintf(stderr, "usage: wakeup-c --mode eventfd|signal [--samples N] [--warmup K]\n"); return 2; }
    }
    if (samples < 1) samples = 1;

    // SIGCHLD stays blocked outside the wait, so an early one stays pending (the legacy loop's rule).
    sigset_t blocked, wait_mask;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &blocked, &wait_mask);
    sigdelset(&wait_mask, SIGCHLD);
    struct sigaction sa = {.sa_handler = on_sigchld};
    sigaction(SIGCHLD, &sa, NULL);
    waiter_tid = (pid_t)syscall(SYS_gettid);

    efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);

    sem_init(&job_ready, 0, 0);
    int jobs = samples + warmup;
    pthread_t thread;
    pthread_create(&thread, NULL, worker, &jobs);  // inherits the blocked SIGCHLD

    int64_t *latencies = calloc((size_t)samples, sizeof *latencies);
    for (int i = 0; i < jobs; i++) {
        sem_post(&job_ready);
        if (use_signal) {
            while (!woken) {
                struct timespec timeout = {.tv_sec = 1};
                pselect(0, NULL, NULL, NULL, &timeout, &wait_mask);
            }
            woken = 0;
        } else {
            struct epoll_event out;
            uint64_t value;
            while (epoll_wait(ep, &out, 1, 1000) < 1) {}
            if (read(efd, &value, sizeof value) != sizeof value) perror("read");
        }
        int64_t latency = now_ns() - atomic_load_explicit(&stamped_at, memory_order_acquire);
        if (i >= warmup) latencies[i - warmup] = latency;
    }
    pthread_join(thread, NULL);

    qsort(latencies, (size_t)samples, sizeof *latencies, compare);
    printf("result p50_us=%.1f p99_us=%.1f samples=%d", latencies[(samples - 1) / 2] / 1000.0,
           latencies[(size_t)((samples - 1) * 0.99)] / 1000.0, samples);
    print_cdf(latencies, (size_t)samples);
    printf("\n");
    return 0;
}
