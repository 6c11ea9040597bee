import CLoopShim
import Glibc
import LoopCore

/// The signalfd of an epoll loop: SIGHUP/SIGTERM/SIGINT/SIGPWR become shutdown
/// requests (unless the configuration leaves them alone), SIGPIPE and SIGIO are
/// only counted (the legacy loop's handlers count them too; unblocked and
/// unhandled, either would terminate the process).
///
/// signalfd sees a process-directed signal only if every thread blocks it:
/// the reader blocks the signals on the loop thread (a claim on its mask),
/// worker threads inherit a blocked mask, and an executable must block them in
/// `main` before it starts any other thread (see README).
final class EpollSignalReader {
    private let signals: LoopSignals
    /// What the signalfd reads.
    private let signalSet: [Int32]
    private(set) var fd: Int32 = -1
    private var maskClaim: ThreadSignalMask.Claim?

    init(signals: LoopSignals, handlesAdminSignals: Bool) {
        self.signals = signals
        signalSet = (handlesAdminSignals ? adminSignals : []) + [SIGPIPE, SIGIO]
    }

    /// Blocks the signals on this thread and opens the signalfd.
    func open() throws(SystemError) {
        var mask = Self.set(of: signalSet)
        maskClaim = ThreadSignalMask.claim(Dictionary(uniqueKeysWithValues: signalSet.map { ($0, true) }))
        fd = try systemCall("signalfd") { signalfd(-1, &mask, Int32(SFD_NONBLOCK | SFD_CLOEXEC)) }
    }

    /// Records every signal waiting in the signalfd.
    func drain() {
        var info = signalfd_siginfo()
        while readRecord(fd, &info) { record(Int32(info.ssi_signo)) }
    }

    /// Gives the thread's mask back and closes the signalfd.
    ///
    /// A SIGPIPE or SIGIO that arrived while the loop owned it is the loop's to
    /// count, as legacy's handler does, also when the embedder blocks it too: left
    /// pending (a write in the last callback raised it, say), it would meet its
    /// default action (terminate) whenever the thread or the process unblocks it.
    /// Admin signals stay pending and reach the embedder's own disposition.
    func stop() {
        guard let claim = maskClaim else { return close() }
        if fd >= 0 {
            var counted = Self.set(of: [SIGPIPE, SIGIO])
            do {
                _ = try systemCall("signalfd") { signalfd(fd, &counted, Int32(SFD_NONBLOCK | SFD_CLOEXEC)) }
                drain()
            } catch {
                // Deliberately ignored, in teardown: unnarrowed, a drain would take the
                // admin signals too; left pending, they and these meet the embedder's mask.
            }
        }
        ThreadSignalMask.release(claim)
        maskClaim = nil
        close()
    }

    /// In a forked child: the claim goes (bookkeeping only, the mask is the
    /// child's to keep) and the child's copy of the signalfd is closed.
    func abandon() {
        if let claim = maskClaim { ThreadSignalMask.release(claim) }
        maskClaim = nil
        close()
    }

    private func close() {
        closeDescriptor(fd)
        fd = -1
    }

    private func record(_ signo: Int32) {
        switch signo {
        case SIGPIPE: signals.sigPipes.add(1, ordering: .relaxed)
        case SIGIO: signals.sigIOs.add(1, ordering: .relaxed)
        default: signals.requestShutdown(ShutdownReason.forSignal(signo))
        }
    }

    private static func set(of signals: [Int32]) -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        return set
    }
}
