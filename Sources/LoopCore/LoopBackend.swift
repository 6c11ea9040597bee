/// What a descriptor is watched for.
package struct Interest: OptionSet, Sendable, Hashable {
    package let rawValue: UInt8
    package init(rawValue: UInt8) { self.rawValue = rawValue }
    package static let read = Interest(rawValue: 1)
    package static let write = Interest(rawValue: 2)
}

/// One ready descriptor from a wait. `generation` is the generation of the
/// registration the backend was told about, so the core can drop an event
/// whose fd was unregistered (and maybe reused) earlier in the same batch.
package struct ReadyEvent: Sendable, Equatable {
    package var fd: Int32
    package var generation: UInt32
    package var readable: Bool
    package var writable: Bool

    package init(fd: Int32, generation: UInt32, readable: Bool, writable: Bool) {
        self.fd = fd
        self.generation = generation
        self.readable = readable
        self.writable = writable
    }
}

/// Wakes a loop from any thread. Backends implement it with whatever reaches
/// a blocked wait: an eventfd write, or a signal directed at the loop thread.
public protocol LoopWaker: Sendable {
    /// Ends the loop's current or next wait; safe from any thread.
    func wakeup()
}

/// What differs between the two loops, and nothing else: how readiness is
/// waited for, how the timers fire, how a wake-up and an admin signal arrive,
/// and setup/teardown. Everything else lives once, in `EventLoop`.
///
/// All methods but `waker` are called on the loop's thread only.
package protocol LoopBackend: AnyObject {
    var kind: LoopBackendKind { get }

    /// The first descriptor this backend cannot watch, if it has such a limit.
    var descriptorLimit: Int32? { get }

    /// Where timer ticks, wake-ups and signals are reported (the legacy
    /// backend's is process-wide, because its signal handlers are).
    var signals: LoopSignals { get }

    /// How a child's exit reaches the loop: true when by SIGCHLD (its handler counts
    /// `signals.sigChlds` and ends the wait), false when the core is to watch a pidfd.
    var reportsChildExitsBySignal: Bool { get }

    /// Creates the backend's own descriptors, timers and signal plumbing.
    /// Called once, on the loop thread.
    func start() throws(LoopError)

    /// Puts a descriptor in the mode this backend expects (`O_NONBLOCK`, plus `O_ASYNC` for legacy).
    func prepare(fd: Int32) throws(LoopError)

    /// The set of watched events of `fd` changes from `old` to `new`.
    func setInterest(fd: Int32, generation: UInt32, old: Interest, new: Interest) throws(LoopError)

    /// Blocks up to `timeoutMs` (0 = poll, -1 = until something happens) and appends
    /// ready descriptors to `events`.
    /// Timer ticks, wake-ups and admin signals are folded into `signals` here.
    /// An interrupted wait returns normally with no events.
    func wait(timeoutMs: Int, into events: inout [ReadyEvent]) throws(LoopError)

    /// Cheap check from inside long work: has a quickpoll interval passed?
    /// Folds any pending quickpoll tick into `signals.needsToQuickPoll`.
    func pollQuickPollTimer()

    /// Arms (true) or disarms the timers (around fork/exec of children).
    func setTimersEnabled(_ enabled: Bool)

    /// The original's `interruptsOn`/`interruptsOff`.
    func setInterruptsEnabled(_ enabled: Bool)

    var waker: any LoopWaker { get }

    /// Restores every piece of process state the backend changed and closes its descriptors.
    func stop()

    /// In a forked child: closes the child's copies of the backend's descriptors
    /// and restores nothing (the timers, masks and dispositions were the parent's).
    func abandon()
}
