// Thin wrappers for what Glibc's Swift module does not export: the FD_* macros,
// epoll with its packed event, thread-directed signals, siginfo fields, sigaction
// with an SA_SIGINFO handler, fork, pidfd_open, waitid and accept4. No policy here.
#define _GNU_SOURCE
#include "CLoopShim.h"
#include <string.h>
#include <errno.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

void shim_fd_zero(fd_set *set) { FD_ZERO(set); }
void shim_fd_set(int fd, fd_set *set) { FD_SET(fd, set); }
void shim_fd_clr(int fd, fd_set *set) { FD_CLR(fd, set); }
int shim_fd_isset(int fd, const fd_set *set) { return FD_ISSET(fd, set) ? 1 : 0; }
int shim_fd_setsize(void) { return FD_SETSIZE; }

int shim_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.u64 = data;
    return epoll_ctl(epfd, op, fd, &ev);
}

int shim_epoll_wait(int epfd, uint64_t *datas, uint32_t *events, int max, int timeout_ms) {
    struct epoll_event evs[256];
    if (max > 256) max = 256;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    for (int i = 0; i < n; i++) {
        datas[i] = evs[i].data.u64;
        events[i] = evs[i].events;
    }
    return n;
}

int shim_gettid(void) { return (int)syscall(SYS_gettid); }
int shim_tgkill(int tgid, int tid, int sig) { return (int)syscall(SYS_tgkill, tgid, tid, sig); }

int shim_siginfo_code(const siginfo_t *info) { return info->si_code; }

int shim_install_handler(int sig, shim_sig_handler handler, const sigset_t *mask, int flags,
                         struct sigaction *previous) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = flags | SA_SIGINFO;
    if (mask) sa.sa_mask = *mask; else sigemptyset(&sa.sa_mask);
    return sigaction(sig, &sa, previous);
}

int shim_handler_is(int sig, shim_sig_handler handler) {
    struct sigaction current;
    if (sigaction(sig, NULL, &current) != 0) return 0;
    return (current.sa_flags & SA_SIGINFO) && current.sa_sigaction == handler;
}

int shim_fork(void) { return (int)fork(); }

int shim_pidfd_open(int pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int shim_child_exited(int pid) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0) return -1;
    return info.si_pid == pid ? 1 : 0;
}

int shim_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags) {
    return accept4(fd, address, length, flags);
}
