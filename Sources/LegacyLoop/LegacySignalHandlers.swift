import CLoopShim
import Glibc
import LoopCore
import Synchronization

/// Process-wide state of the legacy loop. Signal dispositions are per
/// process, so at most one legacy loop is active at a time. Every field is
/// touched by `SelectBackend.start()` before a handler is installed, so a
/// handler never runs a lazy initializer.
enum LegacyProcessState {
    /// The active loop's `LoopSignals`, unretained, as a bit pattern (0 = none).
    /// Each loop has its own, so a stale stop handle never reaches a later loop.
    static let current = Atomic<UInt>(0)
    /// Kernel thread id of the loop thread (0 = no loop).
    static let loopThreadID = Atomic<Int32>(0)
    static let active = Atomic<Bool>(false)
    /// The active loop's serial number (0 = none). Serials are never reused, so
    /// a waker that outlives its loop cannot mistake a later loop for its own
    /// (an address can be reused by the next loop's state).
    static let serial = Atomic<UInt64>(0)
    static let lastSerial = Atomic<UInt64>(0)
    /// `shim_fork_generation()` of the process whose loop is active: a forked
    /// child sees the parent's loop as active in its copy, but it is not its own.
    static let forkGeneration = Atomic<Int32>(0)
    /// Handlers running now, on any thread. `stop()` unpublishes `current`, then
    /// waits for this to reach 0 before the loop's state may be freed.
    static let handlersRunning = Atomic<Int>(0)

    /// Marks no legacy loop active. Unpublishes the loop's state and, unless told
    /// not to, returns only once no handler can still be using it.
    static func clear(waitingForHandlers: Bool) {
        serial.store(0, ordering: .releasing)
        current.store(0, ordering: .sequentiallyConsistent)
        while waitingForHandlers && handlersRunning.load(ordering: .sequentiallyConsistent) != 0 { sched_yield() }
        loopThreadID.store(0, ordering: .relaxed)
        active.store(false, ordering: .releasing)
    }
}

/// The one handler for every signal the legacy loop catches. It touches only
/// lock-free atomics and makes async-signal-safe syscalls (gettid, tgkill).
let legacySignalHandler: @convention(c) (Int32, UnsafeMutablePointer<siginfo_t>?, UnsafeMutableRawPointer?) -> Void = {
    signo, info, _ in
    let savedErrno = errno
    LegacyProcessState.handlersRunning.add(1, ordering: .sequentiallyConsistent)
    defer {
        LegacyProcessState.handlersRunning.subtract(1, ordering: .sequentiallyConsistent)
        errno = savedErrno
    }
    let raw = LegacyProcessState.current.load(ordering: .sequentiallyConsistent)
    guard raw != 0, let pointer = UnsafeRawPointer(bitPattern: raw) else { return }
    // No retain or release in the handler: the backend keeps the object alive while it is published.
    Unmanaged<LoopSignals>.fromOpaque(pointer)._withUnsafeGuaranteedRef { s in
        handle(signo, info, s)
    }
}

@inline(__always)
private func handle(_ signo: Int32, _ info: UnsafeMutablePointer<siginfo_t>?, _ s: LoopSignals) {
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
        // it, and then the loop's pselect was not interrupted; on the loop
        // thread it may land just before pselect. Either way a SIGCHLD to the
        // loop thread (blocked outside pselect) ends the next wait at once.
        // The result is deliberately ignored (a handler can report nothing): a loop
        // thread gone meanwhile (ESRCH) has no wait left to end.
        let loop = LegacyProcessState.loopThreadID.load(ordering: .relaxed)
        if loop != 0 { _ = shim_tgkill(getpid(), loop, SIGCHLD) }
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
/// interrupts that thread's `pselect` and no other. A waker outliving its
/// loop does nothing: it only signals while its loop is the active one.
struct SignalWaker: LoopWaker {
    /// The serial of its loop (`LegacyProcessState.serial` while that loop is active).
    let serial: UInt64

    func wakeup() {
        guard serial != 0, LegacyProcessState.serial.load(ordering: .acquiring) == serial else { return }
        let loop = LegacyProcessState.loopThreadID.load(ordering: .relaxed)
        // The result is deliberately ignored: a loop thread gone meanwhile (ESRCH,
        // its loop closing) has no wait left to end.
        if loop != 0 { _ = shim_tgkill(getpid(), loop, SIGCHLD) }
    }
}
