// What Glibc's Swift module does not export, in three parts, one .c file each:
// thin Glibc wrappers (glibc.c), the process policy with its load-time
// constructor (process.c), and the UDP server's datagram batches (datagrams.c).
// epoll, timerfd, eventfd and signalfd come straight from the headers below.
#ifndef CLOOPSHIM_H
#define CLOOPSHIM_H

#include <stdint.h>
#include <signal.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/select.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/time.h>
#include <time.h>

// ---- Glibc wrappers (glibc.c) ----

// fd_set macros (glibc aborts when fd >= FD_SETSIZE; callers check first).
void shim_fd_zero(fd_set *set);
void shim_fd_set(int fd, fd_set *set);
void shim_fd_clr(int fd, fd_set *set);
int shim_fd_isset(int fd, const fd_set *set);
int shim_fd_setsize(void);

// epoll_event is packed on x86_64; keep its layout on the C side.
int shim_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
int shim_epoll_wait(int epfd, uint64_t *datas, uint32_t *events, int max, int timeout_ms);

// Thread-directed signals and ids.
int shim_gettid(void);
int shim_tgkill(int tgid, int tid, int sig);

// siginfo fields Swift cannot reach through the union.
int shim_siginfo_code(const siginfo_t *info);

// sigaction with an SA_SIGINFO handler.
typedef void (*shim_sig_handler)(int, siginfo_t *, void *);
int shim_install_handler(int sig, shim_sig_handler handler, const sigset_t *mask, int flags,
                         struct sigaction *previous);

// 1 when `sig`'s current action is `handler` (installed with SA_SIGINFO).
int shim_handler_is(int sig, shim_sig_handler handler);

// pidfd_open(2) (Linux >= 5.3; -1 with ENOSYS before), close-on-exec.
int shim_pidfd_open(int pid);

// Whether `pid` is a child of this process that has exited, without reaping it
// (waitid with WNOWAIT): 1 exited, 0 still running, -1 with errno (ECHILD: not our child).
int shim_child_exited(int pid);

// fork(2), which Swift does not import. For tests and for embedders that fork.
int shim_fork(void);

/// accept4(2): Glibc declares it only under _GNU_SOURCE.
int shim_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags);

// ---- Process policy (process.c) ----

// Fork awareness. A process-wide counter bumped in every forked child (a
// pthread_atfork child handler installed when the library loads), so a loop
// can tell that it is being used from a copy of the process that created it.
int shim_fork_generation(void);

// A number for the calling thread, unique for the life of the process (a
// pthread_t can be reused by the next thread; this is never reused).
uint64_t shim_thread_token(void);

// The legacy loop's handlers: what each signal had before, so that the
// atfork child handler can put it back in a forked child (where the loop is
// the parent's and its handler would swallow SIGTERM).
void shim_legacy_handler_installed(int sig, shim_sig_handler handler, const struct sigaction *previous);
void shim_legacy_handlers_removed(void);

// Signals the loop library itself blocked (count > 0) or unblocked, process-wide.
// A child process must not inherit those changes: spawn helpers and the
// atfork child handler undo them.
void shim_library_mask_note(int sig, int blocked_delta, int unblocked_delta);
// Rewrites `mask` into what a child should start with.
void shim_library_mask_undo(sigset_t *mask);

// ---- The UDP server's datagram batches (datagrams.c) ----

// Several datagrams in one system call (recvmmsg(2), sendmmsg(2)), which Glibc
// declares only under _GNU_SOURCE. At most SHIM_MAX_DATAGRAMS a call; a call for
// one datagram uses recvfrom(2)/sendto(2), which cost less.
#define SHIM_MAX_DATAGRAMS 256

/// Reads up to `count` datagrams without blocking, datagram i into the `buffer_size`
/// bytes at `buffers + i * buffer_size`, its source into `sources[i]` and its real
/// length (MSG_TRUNC: it may exceed `buffer_size`) into `lengths[i]`. Returns how
/// many were read, or -1 with errno (EAGAIN: none waiting). EINTR is retried.
int shim_recv_datagrams(int fd, void *buffers, uint32_t buffer_size, struct sockaddr_in *sources,
                        uint32_t *lengths, unsigned count);

/// Sends datagram i (`lengths[i]` bytes at `bases[i]`) to `destinations[i]`, in order,
/// without blocking, for i < count. Returns how many the kernel took (fewer when it
/// stopped at an error, which the next call starting there reports), or -1 with errno
/// when it took none. EINTR is retried.
int shim_send_datagrams(int fd, const void *const *bases, const uint32_t *lengths,
                        const struct sockaddr_in *destinations, unsigned count);

#endif
