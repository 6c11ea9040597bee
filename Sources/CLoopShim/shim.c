#define _GNU_SOURCE
#include "CLoopShim.h"
#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <pthread.h>

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

// ---- fork awareness and the library's signal-mask changes ----

static int fork_generation;                 // bumped in each forked child
static uint64_t next_thread_token;
static __thread uint64_t thread_token;

uint64_t shim_thread_token(void) {
    if (thread_token == 0) thread_token = __atomic_add_fetch(&next_thread_token, 1, __ATOMIC_RELAXED);
    return thread_token;
}

// Written by the loop thread around the legacy loop's life; read by the
// atfork child handler, which runs in a copy with only the forking thread.
static shim_sig_handler legacy_handler;
static int legacy_installed[_NSIG];
static struct sigaction legacy_previous[_NSIG];

void shim_legacy_handler_installed(int sig, shim_sig_handler handler, const struct sigaction *previous) {
    if (sig <= 0 || sig >= _NSIG) return;
    legacy_handler = handler;
    legacy_previous[sig] = *previous;
    legacy_installed[sig] = 1;
}

void shim_legacy_handlers_removed(void) {
    for (int sig = 1; sig < _NSIG; sig++) legacy_installed[sig] = 0;
}
static int blocked_by_library[_NSIG];       // per signal: holds that blocked it
static int unblocked_by_library[_NSIG];     // per signal: holds that unblocked it

int shim_fork_generation(void) { return __atomic_load_n(&fork_generation, __ATOMIC_ACQUIRE); }

int shim_fork(void) { return (int)fork(); }

void shim_library_mask_note(int sig, int blocked_delta, int unblocked_delta) {
    if (sig <= 0 || sig >= _NSIG) return;
    __atomic_add_fetch(&blocked_by_library[sig], blocked_delta, __ATOMIC_RELAXED);
    __atomic_add_fetch(&unblocked_by_library[sig], unblocked_delta, __ATOMIC_RELAXED);
}

void shim_library_mask_undo(sigset_t *mask) {
    // A signal the library both blocked (process set-up) and unblocked again (the
    // legacy loop's own thread) was unblocked before the library touched it.
    for (int sig = 1; sig < _NSIG; sig++) {
        if (__atomic_load_n(&unblocked_by_library[sig], __ATOMIC_RELAXED) > 0) sigaddset(mask, sig);
        if (__atomic_load_n(&blocked_by_library[sig], __ATOMIC_RELAXED) > 0) sigdelset(mask, sig);
    }
}

// In a forked child: mark the copy, and give its only thread the mask the
// program had before the library changed it (only async-signal-safe calls).
static void child_after_fork(void) {
    __atomic_add_fetch(&fork_generation, 1, __ATOMIC_RELEASE);
    // The parent's legacy loop is not this process's: its handler would record
    // SIGTERM into a loop nobody runs here. Put back what each signal had.
    for (int sig = 1; sig < _NSIG; sig++) {
        if (legacy_installed[sig] && shim_handler_is(sig, legacy_handler)) sigaction(sig, &legacy_previous[sig], NULL);
        legacy_installed[sig] = 0;
    }
    sigset_t mask;
    if (pthread_sigmask(SIG_SETMASK, NULL, &mask) == 0) {
        shim_library_mask_undo(&mask);
        pthread_sigmask(SIG_SETMASK, &mask, NULL);
    }
}

__attribute__((constructor)) static void install_fork_handler(void) {
    pthread_atfork(NULL, NULL, child_after_fork);
}

int shim_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags) {
    return accept4(fd, address, length, flags);
}

int shim_recv_datagrams(int fd, void *buffers, uint32_t buffer_size, struct sockaddr_in *sources,
                        uint32_t *lengths, unsigned count) {
    if (count == 1) {
        // One datagram: recvfrom costs less than recvmmsg's per-message header copies.
        socklen_t length = sizeof(struct sockaddr_in);
        ssize_t r;
        do {
            r = recvfrom(fd, buffers, buffer_size, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)sources, &length);
        } while (r < 0 && errno == EINTR);
        if (r < 0) return -1;
        lengths[0] = (uint32_t)r;
        return 1;
    }
    struct mmsghdr messages[SHIM_MAX_DATAGRAMS];
    struct iovec vectors[SHIM_MAX_DATAGRAMS];
    if (count > SHIM_MAX_DATAGRAMS) count = SHIM_MAX_DATAGRAMS;
    memset(messages, 0, sizeof(messages[0]) * count);
    for (unsigned i = 0; i < count; i++) {
        vectors[i].iov_base = (char *)buffers + (size_t)i * buffer_size;
        vectors[i].iov_len = buffer_size;
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
        messages[i].msg_hdr.msg_name = &sources[i];
        messages[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
    }
    int n;
    do {
        n = recvmmsg(fd, messages, count, MSG_DONTWAIT | MSG_TRUNC, NULL);
    } while (n < 0 && errno == EINTR);
    for (int i = 0; i < n; i++) lengths[i] = messages[i].msg_len;
    return n;
}

int shim_send_datagrams(int fd, const void *const *bases, const uint32_t *lengths,
                        const struct sockaddr_in *destinations, unsigned count) {
    if (count == 1) {
        // One datagram (the common case at low load): sendto, as recvfrom above.
        ssize_t r;
        do {
            r = sendto(fd, bases[0], lengths[0], MSG_DONTWAIT, (const struct sockaddr *)destinations,
                       sizeof(struct sockaddr_in));
        } while (r < 0 && errno == EINTR);
        return r < 0 ? -1 : 1;
    }
    struct mmsghdr messages[SHIM_MAX_DATAGRAMS];
    struct iovec vectors[SHIM_MAX_DATAGRAMS];
    if (count > SHIM_MAX_DATAGRAMS) count = SHIM_MAX_DATAGRAMS;
    memset(messages, 0, sizeof(messages[0]) * count);
    for (unsigned i = 0; i < count; i++) {
        vectors[i].iov_base = (void *)bases[i];
        vectors[i].iov_len = lengths[i];
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
        messages[i].msg_hdr.msg_name = (void *)&destinations[i];
        messages[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
    }
    int n;
    do {
        n = sendmmsg(fd, messages, count, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    return n;
}
