/// A handle to one registered callback; pass it to `EventLoop.unregister`.
/// Identity is the handle itself; `owner` keys the legacy dedup rule.
public final class Registration {
    /// What a registration watches.
    public enum Kind: Sendable, Equatable {
        /// A descriptor's readability (`registerRead`).
        case read
        /// A descriptor's writability (`registerWrite`).
        case write
        /// A period of time (`registerSleep`).
        case sleep
        /// One point in time (`after`): called once, then removed.
        case timer
        /// A child process's exit (`watchChild`): called once, then removed.
        case child
    }

    /// What this registration watches.
    public let kind: Kind
    /// The watched descriptor; -1 for sleep callbacks, timers and child watches.
    public let fd: Int32
    /// 0 = urgent, 1 = background, 2 = lowest.
    public let niceness: Int
    /// Registering the same (fd, kind, owner) again returns this handle.
    public let owner: AnyHashable?
    /// False once unregistered: a dispatch in progress skips it.
    @exclusivity(unchecked) public internal(set) var isActive = true

    /// Dropped when the registration is removed (or its loop closes): a callback
    /// that captures its own handle or its loop must not keep them alive.
    @exclusivity(unchecked) private(set) var fdCallback: ((Int32) -> Void)?
    @exclusivity(unchecked) private(set) var sleepCallback: (() -> Void)?
    /// Sleep callbacks: period and last call time (ms). Timers: delay and registration time.
    let tick: Int64
    @exclusivity(unchecked) var lastCall: Int64
    /// Sleep callbacks: whether in one of `SleepSchedule`'s queues, and which of its
    /// entries there is the live one; the registration order (newest first when several are due).
    @exclusivity(unchecked) var isScheduled = false
    @exclusivity(unchecked) var scheduleToken: UInt32 = 0
    var queueIndex = 0
    /// Child watches: the watched pid.
    var childPid: Int32 = 0
    var sequence: UInt64 = 0

    init(
        kind: Kind, fd: Int32, niceness: Int, owner: AnyHashable?, tick: Int64, now: Int64,
        fdCallback: ((Int32) -> Void)?, sleepCallback: (() -> Void)?
    ) {
        self.kind = kind
        self.fd = fd
        self.niceness = niceness
        self.owner = owner
        self.tick = tick
        self.lastCall = now
        self.fdCallback = fdCallback
        self.sleepCallback = sleepCallback
    }

    /// Marks the registration removed and hands back its callback, for the caller
    /// to release once the loop's own state is consistent again: releasing it may
    /// run a deinit that calls back into the loop.
    func detach() -> Any? {
        isActive = false
        defer {
            fdCallback = nil
            sleepCallback = nil
        }
        return fdCallback ?? sleepCallback
    }

    /// When a sleep callback is next due; saturates instead of overflowing.
    var nextDue: Int64 {
        let (sum, overflow) = lastCall.addingReportingOverflow(tick)
        return overflow ? .max : sum
    }

    /// The niceness the loop reports while this callback runs (2 counts as 1).
    var effectiveNiceness: Int { min(max(niceness, 0), 1) }
}

/// The registrations of one descriptor. A fresh entry gets a fresh
/// generation, so events for an older registration of the same fd number are
/// recognised as stale.
final class DescriptorEntry {
    let generation: UInt32
    /// Head of the chain first, as the original inserts new registrations at the head.
    @exclusivity(unchecked) var reads: [Registration] = []
    @exclusivity(unchecked) var writes: [Registration] = []
    /// Places in the loop's dispatch orders (`DispatchOrder`); -1 while the chain is empty.
    @exclusivity(unchecked) var readRank = -1
    @exclusivity(unchecked) var writeRank = -1

    init(generation: UInt32) { self.generation = generation }

    var interest: Interest {
        var i: Interest = []
        if !reads.isEmpty { i.insert(.read) }
        if !writes.isEmpty { i.insert(.write) }
        return i
    }
}
