import Compat
import Glibc

/// The signal-mask rule for processes that run an epoll loop: signalfd only
/// sees a process-directed signal when every thread blocks it, so `main`
/// blocks the admin signals before any other thread exists. The legacy loop
/// needs them unblocked, since it catches them with handlers.
func prepareProcessSignals(for backend: LoopBackendKind) {
    guard backend == .epoll else { return }
    var mask = sigset_t()
    sigemptyset(&mask)
    for s in adminSignals + [SIGPIPE] { sigaddset(&mask, s) }
    pthread_sigmask(SIG_BLOCK, &mask, nil)
}
