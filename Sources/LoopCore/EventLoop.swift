import CLoopShim
import Glibc

/// The loop: registrations, dispatch by niceness, sleep callbacks, quickpoll,
/// worker completions and shutdown. Written once; a `LoopBackend` supplies only
/// the wait, the timers, the wake-up and the signals.
///
/// Not thread-safe by design: every method but `waker`/`stopHandle` must be
/// called on the thread that created the loop, and throws `.wrongThread`
/// otherwise. It belongs to the process that created it: in a forked child
/// every method throws `.forkedChild` but `close()`, which releases the child's
/// copies of the descriptors and nothing else.
///
/// This file is the poll and the dispatch; registering, quickpoll and shutdown
/// are in the `EventLoop+` files, the bookkeeping in `RegistrationTable` and
/// `JobCompletions`.
///
/// The hot stored properties are `@exclusivity(unchecked)`: the loop runs on
/// one thread and handles re-entrancy from callbacks itself (`isActive`,
/// `dispatchDepth`, chains copied before they are walked), and the run-time
/// checks were half of the loop's instructions per callback (docs/BENCHMARKS.md).
public final class EventLoop {
    /// What waits, times and signals for this loop.
    package let backend: any LoopBackend
    /// The tunables the loop was made with.
    public let configuration: LoopConfiguration
    /// Which backend this loop runs on.
    public var kind: LoopBackendKind { backend.kind }

    /// ms, refreshed every iteration (the original's `getTime()`).
    @exclusivity(unchecked) public internal(set) var now: Int64
    /// ms, refreshed every iteration and advanced by the quickpoll timer in between.
    public var nowApprox: Int64 { signals.nowApprox.load(ordering: .relaxed) }
    /// Moving average of CPU use in percent, fed by the real timer.
    public var cpuUsage: Double { signals.cpuUsage }
    /// The niceness of the callback now running.
    @exclusivity(unchecked) public internal(set) var niceness = 0
    /// True while a quickpoll runs (a callback it calls cannot quickpoll again).
    @exclusivity(unchecked) public internal(set) var inQuickPoll = false
    /// The sleep-callback scan period: starts at 40 ms, lowered by faster callbacks.
    @exclusivity(unchecked) public internal(set) var minTick: Int64 = defaultMinimumTickMs
    /// True once `close()` ran (or a callback closed the loop).
    @exclusivity(unchecked) public internal(set) var isClosed = false
    /// False between `disableTimer()` and `enableTimer()`.
    public internal(set) var timersEnabled = true
    /// The original's interrupt flag: on while `run()` runs, or between `interruptsOn()` and `interruptsOff()`.
    public internal(set) var interruptsEnabled = false

    let signals: LoopSignals
    /// `shim_thread_token()` of the creating thread (a pthread_t may be reused by a later thread).
    let owner: UInt64
    /// `shim_fork_generation()` when the loop was made: a different value means a forked child.
    let forkGeneration: Int32
    @exclusivity(unchecked) var table: RegistrationTable
    /// Reused by `dispatch` (taken out while in use: a quickpoll dispatches inside a dispatch).
    @exclusivity(unchecked) private var rankedBuffer: [RankedEvent] = []
    @exclusivity(unchecked) private var lastSleepRun: Int64
    @exclusivity(unchecked) var bottomHalves: [BottomHalf] = []
    @exclusivity(unchecked) var pendingCloses: [Int32] = []
    @exclusivity(unchecked) var dispatchDepth = 0
    @exclusivity(unchecked) private var events: [ReadyEvent] = []
    @exclusivity(unchecked) private var quickEvents: [ReadyEvent] = []
    @exclusivity(unchecked) var stats: LoopCounters
    let jobs: JobCompletions

    /// A loop on `backend`; `Loop.make` picks the backend for the user.
    package init(backend: any LoopBackend, configuration: LoopConfiguration = LoopConfiguration()) throws(LoopError) {
        try configuration.validate()
        self.forkGeneration = shim_fork_generation()
        self.backend = backend
        self.configuration = configuration
        self.signals = backend.signals
        self.owner = shim_thread_token()
        let t = configuration.clock.milliseconds()
        self.now = t
        self.lastSleepRun = t
        self.table = RegistrationTable(capacity: configuration.maxRegistrations)
        self.stats = LoopCounters(backend: backend.kind)
        self.jobs = JobCompletions(threads: configuration.workerThreads, signals: backend.signals)
        events.reserveCapacity(256)
        quickEvents.reserveCapacity(256)
        try backend.start()
        signals.nowApprox.store(t, ordering: .relaxed)
    }

    deinit {
        if !isClosed { closeResources() }
    }

    // MARK: Running

    /// Runs until a shutdown is requested (admin signal or `stop()`); returns why,
    /// and consumes the request.
    public func run() throws(LoopError) -> ShutdownReason {
        try checkUsable("run")
        setInterrupts(true)
        defer { setInterrupts(false) }
        while true {
            refreshClock()
            signals.needsToQuickPoll.store(false, ordering: .relaxed)
            // Consumed: `run()` can run again, and a request that arrives after
            // it returned is a new one (handed back to the process by `close()`).
            if let reason = signals.takeShutdownRequest() { return reason }
            // A callback closed the loop: its backend is gone, so stop here.
            if isClosed { return .stopped }
            try poll(quick: false, maxWaitMs: nil)
        }
    }

    /// One iteration of the loop (the original's `doPoll`), for callers that drive it
    /// themselves. Its wait ends after the quickpoll interval at the latest, as
    /// `doPoll`'s select did, so a caller's own loop gets control back.
    public func runOnce() throws(LoopError) {
        try runOnce(maxWaitMs: configuration.quickPollIntervalMs)
    }

    /// One iteration that waits at most `maxWaitMs` (0: only what is ready now), or,
    /// when nil, as `run()` waits: until the next sleep callback or one-shot timer is
    /// due, a descriptor is ready, a wake-up or a signal arrives.
    public func runOnce(maxWaitMs: Int?) throws(LoopError) {
        try checkUsable("runOnce")
        if let maxWaitMs, maxWaitMs < 0 { throw .invalidPeriod(maxWaitMs) }
        refreshClock()
        signals.needsToQuickPoll.store(false, ordering: .relaxed)
        try poll(quick: false, maxWaitMs: maxWaitMs)
    }

    // MARK: Workers

    /// Runs `work` on a worker thread and `completion(result)` later on the loop thread.
    /// Completions of niceness-0 jobs run before those of background jobs.
    public func submit<T: Sendable>(
        niceness: Int = 0, _ work: @escaping @Sendable () -> T,
        completion: @escaping (T) -> Void
    ) throws(LoopError) {
        try checkUsable("submit")
        try checkNiceness(niceness)
        jobs.submit(niceness: niceness, work, completion: completion, waker: backend.waker)
    }

    /// Jobs submitted whose completion has not run yet.
    public var pendingJobs: Int { jobs.pendingCount }

    /// Jobs a worker has finished whose completion has not run yet (the next
    /// poll runs it). Loop thread; workers may add to it meanwhile.
    public var finishedJobs: Int { jobs.finishedCount }

    // MARK: Counters

    /// Everything the loop has counted so far, with the signal counters of its backend.
    public var counters: LoopCounters {
        var c = stats
        c.alarms = signals.alarms.load(ordering: .relaxed)
        c.vtAlarms = signals.vtAlarms.load(ordering: .relaxed)
        c.sigChlds = signals.sigChlds.load(ordering: .relaxed)
        c.sigQueues = signals.sigQueues.load(ordering: .relaxed)
        c.sigPipes = signals.sigPipes.load(ordering: .relaxed)
        c.sigIOs = signals.sigIOs.load(ordering: .relaxed)
        c.sigOthers = signals.sigOthers.load(ordering: .relaxed)
        c.wakeups = signals.wakeups.load(ordering: .relaxed)
        c.registrations = table.live
        c.cpuUsage = signals.cpuUsage
        return c
    }

    // MARK: The poll (the original's doPoll)

    func poll(quick: Bool, maxWaitMs: Int?) throws(LoopError) {
        stats.polls += 1
        // At the top of every poll, a quickpoll's too, as the original's doPoll: a callback
        // that quickpolls lets them run (`needed()` can ask `inQuickPoll`).
        runBottomHalves()
        // A bottom half (or its `needed()`, asked again by waitTimeout) may close the loop.
        if isClosed { return }

        // Take the buffer out so it is uniquely referenced and keeps its capacity.
        var batch: [ReadyEvent] = []
        if quick { swap(&batch, &quickEvents) } else { swap(&batch, &events) }
        batch.removeAll(keepingCapacity: true)
        let timeout = quick ? 0 : waitTimeout(atMost: maxWaitMs)
        if isClosed { return }
        signals.inWaitState.store(true, ordering: .relaxed)
        do {
            try backend.wait(timeoutMs: timeout, into: &batch)
        } catch {
            signals.inWaitState.store(false, ordering: .relaxed)
            throw error
        }
        signals.inWaitState.store(false, ordering: .relaxed)
        // A quickpoll tick that arrived while the loop was idle in the wait says
        // nothing about the work about to run.
        if !quick { signals.needsToQuickPoll.store(false, ordering: .relaxed) }
        // The wait may have lasted seconds (tickless): nowApprox starts from the clock again.
        refreshClock()

        dispatchDepth += 1
        runCompletions(budgetMs: 3, urgentOnly: true)
        dispatch(batch, urgent: true)
        runCompletions(budgetMs: 3, urgentOnly: true)
        if !quick {
            dispatch(batch, urgent: false)
            runCompletions(budgetMs: 4, urgentOnly: false)
            now = configuration.clock.milliseconds()
            if now >= nextSleepScan || now < lastSleepRun {
                runSleepers(urgentOnly: false)
                lastSleepRun = now
                runCompletions(budgetMs: 4, urgentOnly: false)
            }
            if now >= table.timers.earliestDue {
                runTimers()
                runCompletions(budgetMs: 4, urgentOnly: false)
            }
            checkWatchedChildren()
        }
        dispatchDepth -= 1
        if quick { quickEvents = batch } else { events = batch }
        if dispatchDepth == 0 && !pendingCloses.isEmpty {
            for fd in pendingCloses { closeDescriptor(fd) }
            pendingCloses.removeAll()
        }
    }

    /// 0 when work is already waiting, else until the next sleep scan or one-shot
    /// timer, whichever is earlier, or -1 (no limit) when neither is pending: readiness, a wake-up or a signal
    /// ends the wait. The loop has no tick of its own; a backend may still cap the
    /// wait (legacy: select's 10 ms, as the original). A recorded shutdown is not
    /// work: `run()` returns before it waits, and `runOnce()` during a drain must not spin.
    private func waitTimeout(atMost limit: Int?) -> Int {
        if signals.needsCleanup.load(ordering: .acquiring) { return 0 }
        if bottomHalves.contains(where: { $0.needed() }) { return 0 }
        if table.children.checkPending { return 0 }
        // The clock went back while the loop was working: the deadlines below are in the
        // old time and would mean a wait as long as the step. Scan now (which resets them).
        if now < lastSleepRun || now < table.sleepers.latestLastCall { return 0 }
        // Nothing scheduled (none registered, or all paused): no deadline at all.
        let (untilDeadline, overflow) = min(nextSleepScan, table.timers.earliestDue).subtractingReportingOverflow(now)
        let wait = min(overflow ? .max : max(0, untilDeadline), Int64(limit ?? Int.max))
        return wait > Int64(Int32.max) ? -1 : Int(wait)
    }

    /// Pass 1 (`urgent`) runs the niceness-0 registrations of every ready fd;
    /// pass 2 the niceness > 0 ones. Reads before writes in each pass, the fds of
    /// each in `DispatchOrder`, fixed when the kind's turn begins.
    private func dispatch(_ batch: [ReadyEvent], urgent: Bool) {
        if !urgent && table.background == 0 { return }
        var ranked: [RankedEvent] = []
        swap(&ranked, &rankedBuffer)
        defer { swap(&ranked, &rankedBuffer) }
        for kind in [Registration.Kind.read, .write] {
            ranked.removeAll(keepingCapacity: true)
            var sorted = true
            for event in batch where kind == .read ? event.readable : event.writable {
                guard let entry = table.entry(event.fd), entry.generation == event.generation else {
                    if urgent && kind == .read { stats.staleEvents += 1 }
                    continue
                }
                let rank = kind == .read ? entry.readRank : entry.writeRank
                guard rank >= 0 else { continue }
                if let last = ranked.last, last.rank > rank { sorted = false }
                ranked.append(RankedEvent(rank: rank, fd: event.fd, generation: event.generation))
            }
            if !sorted { ranked.sort { $0.rank < $1.rank } }
            for item in ranked {
                // An earlier callback of this pass may have removed (or replaced) the registration.
                guard let entry = table.entry(item.fd), entry.generation == item.generation else {
                    if urgent && kind == .read { stats.staleEvents += 1 }
                    continue
                }
                let chain = kind == .read ? entry.reads : entry.writes
                for r in chain where r.isActive && (r.niceness == 0) == urgent {
                    call(r)
                }
            }
        }
    }

    private func call(_ r: Registration) {
        let saved = niceness
        niceness = r.effectiveNiceness
        stats.callbacks[min(max(r.niceness, 0), 2)] += 1
        if let cb = r.fdCallback { cb(r.fd) } else { r.sleepCallback?() }
        niceness = saved
    }

    /// The minimum-tick rule: the sleep chain is scanned at most every
    /// `minTick` ms, and (unlike the original, whose callbacks could only run on
    /// `minTick` boundaries) not before some callback is due.
    private var nextSleepScan: Int64 {
        let (afterTick, overflow) = lastSleepRun.addingReportingOverflow(minTick)
        return max(overflow ? .max : afterTick, table.sleepers.earliestDue)
    }

    /// Calls the due sleep callbacks, newest registration first; a last-call time in
    /// the future (the clock went back) is reset to now. The due set is fixed when the
    /// scan begins (one registered meanwhile waits for the next scan); each is checked
    /// again before its call, as a quickpoll inside an earlier callback may have run it.
    func runSleepers(urgentOnly: Bool) {
        if now < table.sleepers.latestLastCall {
            table.sleepers.resetFuture(to: now) { !urgentOnly || $0.niceness == 0 }
        }
        // Removed or paused by an earlier callback of this scan: not called.
        for r in table.sleepers.due(at: now) where r.isActive && r.isScheduled && (!urgentOnly || r.niceness == 0) {
            guard r.nextDue <= now else { continue }
            table.sleepers.called(r, at: now)
            stats.sleepCallbacks += 1
            call(r)
        }
    }

    func runBottomHalves() {
        for half in bottomHalves where half.isActive && half.needed() { half.run() }
    }

    /// Finished jobs' completions, each at its job's niceness, until the budget is spent.
    private func runCompletions(budgetMs: Int64, urgentOnly: Bool) {
        jobs.runFinished(budgetMs: budgetMs, urgentOnly: urgentOnly) { jobNiceness, completion in
            let saved = niceness
            niceness = min(max(jobNiceness, 0), 1)
            stats.jobsCompleted += 1
            completion()
            niceness = saved
        }
    }

    private func refreshClock() {
        now = configuration.clock.milliseconds()
        signals.nowApprox.store(now, ordering: .relaxed)
    }

    // MARK: Checks

    @inline(__always)
    func checkThread(_ operation: String) throws(LoopError) {
        guard shim_thread_token() == owner else { throw .wrongThread(operation: operation) }
        guard !isForkedChild else { throw .forkedChild(operation: operation) }
    }

    func checkNiceness(_ niceness: Int) throws(LoopError) {
        guard (0...2).contains(niceness) else { throw .invalidNiceness(niceness) }
    }

    func checkUsable(_ operation: String) throws(LoopError) {
        try checkThread(operation)
        guard !isClosed else { throw .closed }
    }

    var isForkedChild: Bool { shim_fork_generation() != forkGeneration }
}

/// A ready descriptor with its place in the dispatch order.
struct RankedEvent {
    let rank: Int
    let fd: Int32
    let generation: UInt32
}
