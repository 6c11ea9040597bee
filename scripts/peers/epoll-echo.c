// The reference UDP echo server: a bare level-triggered epoll loop that makes
// the same system calls per datagram as the loop's raw read callback
// (recvfrom until EAGAIN, one sendto per datagram), with nothing else around
// them. What it reaches on this machine is the limit for that call pattern.
//
//   epoll-echo [--port P] [--seconds N]
// Prints "ready port=P pid=PID" once bound; exits on SIGTERM/SIGINT or after N seconds.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
    perror(what);
    exit(1);
}

int main(int argc, char **argv) {
    int port = 0, seconds = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds")) seconds = atoi(argv[i + 1]);
        else { fprintf(stderr, "usage: epoll-echo [--port P] [--seconds N]\n"); return 2; }
    }

    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    socklen_t len = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &len);

    // Signals arrive through a signalfd, as on the Swift epoll loop, so a
    // SIGTERM ends the loop cleanly and the counters can be printed.
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    ev.data.fd = sfd;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) < 0) die("epoll_ctl");

    printf("ready port=%d pid=%d\n", ntohs(addr.sin_port), getpid());
    fflush(stdout);

    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    unsigned char buf[65536];
    struct epoll_event events[64];
    long echoed = 0, polls = 0;
    for (int running = 1; running;) {
        int n = epoll_wait(ep, events, 64, seconds > 0 ? 100 : -1);
        polls++;
        for (int i = 0; i < n; i++) {
            if (events[i].data.fd == sfd) { running = 0; continue; }
            for (;;) {
                struct sockaddr_storage peer;
                socklen_t plen = sizeof peer;
                ssize_t got = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &plen);
                if (got < 0) break;
                sendto(fd, buf, (size_t)got, 0, (struct sockaddr *)&peer, plen);
                echoed++;
            }
        }
        if (seconds > 0) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - start.tv_sec >= seconds) running = 0;
        }
    }
    printf("done echoed=%ld polls=%ld\n", echoed, polls);
    return 0;
}
