// Process policy: fork awareness, the per-thread token, the legacy loop's
// handler records and the library's signal-mask changes, and the load-time
// constructor that installs the pthread_atfork child handler undoing them in a
// forked child.
#define _GNU_SOURCE
#include "CLoopShim.h"
#include <pthread.h>

static int fork_generation;                 // bumped in each forked child

int shim_fork_generation(void) { return __atomic_load_n(&fork_generation, __ATOMIC_ACQUIRE); }

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
