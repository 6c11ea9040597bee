import CLoopShim
import Glibc
import LoopCore
import Synchronization

/// Process-wide state of the legacy loop. Signal dispositions are per
/// process, so there is one of these and at most one legacy loop at a time.
enum LegacyProcessState {
    /// Where the handlers report. Created before any handler is installed, so
    /// a handler never runs a lazy initializer.
    static let signals = LoopSignals()
    /// Kernel thread id of the loop thread (0 = no loop).
    static let loopThreadID = Atomic<Int32>(0)
    static let active = Atomic<Bool>(false)
}

/// The one handler for every signal the legacy loop catches. It touches only
/// lock-free atomics and makes async-signal-safe syscalls (gettid, tgkill).
let legacySignalHandler: @convention(c) (Int32, UnsafeMutablePointer<siginfo_t>?, UnsafeMutableRawPointer?) -> Void = {
    signo, info, _ in
    let s = LegacyProcessState.signals
    switch signo {
    case SIGALRM:
        s.recordCPUTicks(busy: !s.inWaitState.load(ordering: .relaxed), count: 1)
    case SIGVTALRM:
        s.quickPollTick(count: 1, intervalMs: 10)
    case SIGCHLD:
        s.sigChlds.add(1, ordering: .relaxed)
        s.wakeups.add(1, ordering: .relaxed)
        s.needsCleanup.store(true, ordering: .releasing)
    case SIGPIPE:
        s.sigPipes.add(1, ordering: .relaxed)
    case SIGIO:
        s.sigIOs.add(1, ordering: .relaxed)
    case SIGHUP, SIGTERM, SIGINT, SIGPWR:
        s.requestShutdown(ShutdownReason.forSignal(signo))
        // A process-directed signal may land on any thread that does not block
        // it; then the loop's select() was not interrupted. Forward a wake-up.
        let loop = LegacyProcessState.loopThreadID.load(ordering: .relaxed)
        if loop != 0 && loop != shim_gettid() { _ = shim_tgkill(getpid(), loop, SIGCHLD) }
    default:
        if let info, shim_siginfo_code(info) == SI_QUEUE {
            s.sigQueues.add(1, ordering: .relaxed)
            s.wakeups.add(1, ordering: .relaxed)
            s.needsCleanup.store(true, ordering: .releasing)
        } else {
            s.sigOthers.add(1, ordering: .relaxed)
        }
    }
}

/// Wakes the legacy loop with a SIGCHLD directed at the loop thread, so it
/// interrupts that thread's `pselect` and no other.
struct SignalWaker: LoopWaker {
    func wakeup() {
        let loop = LegacyProcessState.loopThreadID.load(ordering: .relaxed)
        if loop != 0 { _ = shim_tgkill(getpid(), loop, SIGCHLD) }
    }
}
