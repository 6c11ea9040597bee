import CLoopShim
import Glibc
import Synchronization

/// The process-wide signal set-up a program that runs a loop needs, and the
/// mask its child processes should start with instead.
public enum ProcessSignals {
    /// The signals `prepare(for:)` blocks for `backend`.
    ///
    /// - epoll: the admin signals, SIGPIPE and SIGIO. signalfd sees a
    ///   process-directed signal only when every thread blocks it, and the loop
    ///   reads all of them from its signalfd (SIGPIPE and SIGIO only to count them).
    /// - legacy: every signal the loop catches. The loop thread unblocks them
    ///   for itself, so process-directed ones, above all the 1 kHz SIGALRM of
    ///   `ITIMER_REAL`, land on the loop thread and interrupt no other thread.
    public static func signalsToBlock(for backend: LoopBackendKind) -> [Int32] {
        switch backend {
        case .epoll: return adminSignals + [SIGPIPE, SIGIO]
        case .legacy: return loopOwnedSignals
        }
    }

    /// Call in `main` before any other thread exists (threads inherit the mask of
    /// their creator): blocks `signalsToBlock(for: backend)` on the calling
    /// thread, for good. Child processes do not inherit this: see `childMask`.
    ///
    /// It also makes shutdown safe: once a loop has closed, the admin signals are
    /// blocked again, so a second SIGTERM or SIGHUP during or after the shutdown
    /// stays pending and the program exits with its own status.
    public static func prepare(for backend: LoopBackendKind) {
        var current = sigset_t()
        pthread_sigmask(SIG_SETMASK, nil, &current)
        var block = sigset_t()
        sigemptyset(&block)
        for signo in signalsToBlock(for: backend) where sigismember(&current, signo) == 0 {
            sigaddset(&block, signo)
            shim_library_mask_note(signo, 1, 0)
        }
        pthread_sigmask(SIG_BLOCK, &block, nil)
        if backend == .legacy && getpid() == shim_gettid() {
            legacyTimerSignalsRouted.store(true, ordering: .releasing)
        }
    }

    /// True once `prepare(for: .legacy)` ran on the main thread: the legacy timer
    /// signals then reach only threads that unblock them (the loop's).
    package static let legacyTimerSignalsRouted = Atomic<Bool>(false)

    /// The calling thread's mask without the changes the loop library made: what
    /// a child process should start with. A child that inherited the loop's
    /// blocked SIGTERM/SIGINT/SIGHUP would ignore Ctrl-C and `kill`.
    /// `ChildProcesses` uses it, and so does the child side of every `fork()`
    /// (a `pthread_atfork` handler installed when the library loads).
    public static var childMask: sigset_t {
        var mask = sigset_t()
        pthread_sigmask(SIG_SETMASK, nil, &mask)
        shim_library_mask_undo(&mask)
        return mask
    }
}
