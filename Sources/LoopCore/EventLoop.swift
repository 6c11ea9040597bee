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
/// The hot stored properties are `@exclusivity(unchecked)`: the loop runs on
/// one thread and handles re-entrancy from callbacks itself (`isActive`,
/// `dispatchDepth`, chains copied before they are walked), and the run-time
/// checks were half of the loop's instructions per callback (docs/BENCHMARKS.md).
public final class EventLoop {
    public let backend: any LoopBackend
    public let configuration: LoopConfiguration
    public var kind: LoopBackendKind { backend.kind }

    /// ms, refreshed every iteration (the original's `getTime()`).
    @exclusivity(unchecked) public private(set) var now: Int64
    /// ms, refreshed every iteration and advanced by the quickpoll timer in between.
    public var nowApprox: Int64 { signals.nowApprox.load(ordering: .relaxed) }
    /// Moving average of CPU use in percent, fed by the real timer.
    public var cpuUsage: Double { signals.cpuUsage }
    /// The niceness of the callback now running.
    @exclusivity(unchecked) public private(set) var niceness = 0
    @exclusivity(unchecked) public private(set) var inQuickPoll = false
    /// The sleep-callback scan period: starts at 40 ms, lowered by faster callbacks.
    @exclusivity(unchecked) public private(set) var minTick: Int64 = defaultMinimumTickMs
    @exclusivity(unchecked) public private(set) var isClosed = false
    /// False between `disableTimer()` and `enableTimer()`.
    public private(set) var timersEnabled = true
    public private(set) var interruptsEnabled = false

    let signals: LoopSignals
    /// `shim_thread_token()` of the creating thread (a pthread_t may be reused by a later thread).
    private let owner: UInt64
    /// `shim_fork_generation()` when the loop was made: a different value means a forked child.
    private let forkGeneration: Int32
    @exclusivity(unchecked) private var descriptors: [DescriptorEntry?] = []
    @exclusivity(unchecked) private var readOrder = DispatchOrder(.read)
    @exclusivity(unchecked) private var writeOrder = DispatchOrder(.write)
    /// Reused by `dispatch` (taken out while in use: a quickpoll dispatches inside a dispatch).
    @exclusivity(unchecked) private var rankedBuffer: [RankedEvent] = []
    /// The sleep callbacks by due time; those due are called newest first, as the
    /// original walks its chain from the head.
    @exclusivity(unchecked) private var sleepers = SleepSchedule()
    @exclusivity(unchecked) private var sleeperOwners: [AnyHashable: Registration] = [:]
    @exclusivity(unchecked) private var lastSleepRun: Int64
    private var nextGeneration: UInt32 = 0
    @exclusivity(unchecked) private var liveRegistrations = 0
    /// Read and write registrations with niceness > 0: without any, pass 2 has nothing to do.
    @exclusivity(unchecked) private var backgroundRegistrations = 0
    @exclusivity(unchecked) private var bottomHalves: [BottomHalf] = []
    @exclusivity(unchecked) private var pendingCloses: [Int32] = []
    @exclusivity(unchecked) private var dispatchDepth = 0
    @exclusivity(unchecked) private var events: [ReadyEvent] = []
    @exclusivity(unchecked) private var quickEvents: [ReadyEvent] = []
    @exclusivity(unchecked) private var stats: LoopCounters
    @exclusivity(unchecked) private var workers: WorkerPool?
    private var nextJobID: UInt64 = 0
    @exclusivity(unchecked) private var completions: [UInt64: (any Sendable) -> Void] = [:]

    public init(backend: any LoopBackend, configuration: LoopConfiguration = LoopConfiguration()) throws(LoopError) {
        try configuration.validate()
        self.forkGeneration = shim_fork_generation()
        self.backend = backend
        self.configuration = configuration
        self.signals = backend.signals
        self.owner = shim_thread_token()
        let t = configuration.clock.milliseconds()
        self.now = t
        self.lastSleepRun = t
        self.stats = LoopCounters(backend: backend.kind)
        events.reserveCapacity(256)
        quickEvents.reserveCapacity(256)
        try backend.start()
        signals.nowApprox.store(t, ordering: .relaxed)
    }

    deinit {
        if !isClosed { closeResources() }
    }

    // MARK: Registration

    /// Calls `callback(fd)` whenever `fd` is readable. Registering the same
    /// non-nil `owner` on the same fd again is a no-op returning the first handle.
    @discardableResult
    public func registerRead(fd: Int32, niceness: Int = 0, owner: AnyHashable? = nil,
                             _ callback: @escaping (Int32) -> Void) throws(LoopError) -> Registration {
        try register(kind: .read, fd: fd, niceness: niceness, owner: owner, callback)
    }

    /// Calls `callback(fd)` whenever `fd` is writable.
    @discardableResult
    public func registerWrite(fd: Int32, niceness: Int = 0, owner: AnyHashable? = nil,
                              _ callback: @escaping (Int32) -> Void) throws(LoopError) -> Registration {
        try register(kind: .write, fd: fd, niceness: niceness, owner: owner, callback)
    }

    /// Calls `callback` about every `periodMs` ms, never more often, counted from its last call.
    @discardableResult
    public func registerSleep(every periodMs: Int, niceness: Int = 0, owner: AnyHashable? = nil,
                              _ callback: @escaping () -> Void) throws(LoopError) -> Registration {
        try checkUsable("registerSleep")
        guard (1...maximumSleepPeriodMs).contains(periodMs) else { throw .invalidPeriod(periodMs) }
        try checkNiceness(niceness)
        if let owner, let existing = sleeperOwners[owner] { return existing }
        try reserveRegistration()
        // A fresh clock, as the original reads one: registered from inside long
        // work, the iteration's `now` is stale and the callback would be due at once.
        let r = Registration(kind: .sleep, fd: -1, niceness: niceness, owner: owner,
                             tick: Int64(periodMs), now: configuration.clock.milliseconds(),
                             fdCallback: nil, sleepCallback: callback)
        sleepers.insert(r)
        if let owner { sleeperOwners[owner] = r }
        minTick = min(minTick, r.tick)
        return r
    }

    /// Takes a sleep callback out of the schedule without giving up its registration:
    /// it is not called, and costs no wake-ups, until `resumeSleep`. For work that
    /// only needs a timer while it has something to time (not in the original).
    /// Registering again with the owner of a paused callback returns it still paused.
    public func pauseSleep(_ registration: Registration) throws(LoopError) {
        try checkThread("pauseSleep")
        guard registration.isActive, registration.kind == .sleep, sleepers.pause(registration) else { return }
        minTick = sleepers.minimumTick(ceiling: defaultMinimumTickMs)
    }

    /// Puts a paused sleep callback back, due one period from now (a fresh clock, as
    /// at registration). Ignored for a callback that is not paused.
    public func resumeSleep(_ registration: Registration) throws(LoopError) {
        try checkUsable("resumeSleep")
        guard registration.isActive, registration.kind == .sleep,
              sleepers.resume(registration, lastCall: configuration.clock.milliseconds()) else { return }
        minTick = min(minTick, registration.tick)
    }

    /// Removes a registration. Safe from inside any callback, including the
    /// registration's own; unknown or already removed handles are ignored.
    public func unregister(_ registration: Registration) throws(LoopError) {
        try checkThread("unregister")
        guard registration.isActive else { return }
        // Released at the end, once the loop's state is consistent: releasing a
        // callback may run a deinit that calls back into the loop.
        let callback = registration.detach()
        defer { withExtendedLifetime(callback) {} }
        liveRegistrations -= 1
        switch registration.kind {
        case .sleep:
            // Its due time leaves with it: a scan then would find nothing due and still
            // restart the minTick interval, delaying the others by up to minTick.
            sleepers.remove(registration)
            if let owner = registration.owner, sleeperOwners[owner] === registration { sleeperOwners[owner] = nil }
            minTick = sleepers.minimumTick(ceiling: defaultMinimumTickMs)
        case .read, .write:
            if registration.niceness > 0 { backgroundRegistrations -= 1 }
            let fd = registration.fd
            guard let entry = entry(fd) else { return }
            let old = entry.interest
            if registration.kind == .read {
                entry.reads.removeAll { $0 === registration }
                if entry.reads.isEmpty { readOrder.remove(entry) }
            } else {
                entry.writes.removeAll { $0 === registration }
                if entry.writes.isEmpty { writeOrder.remove(entry) }
            }
            let new = entry.interest
            if new.isEmpty { descriptors[Int(fd)] = nil }
            if new != old {
                // The fd may already be closed by its owner; the kernel then dropped it itself.
                try? backend.setInterest(fd: fd, generation: entry.generation, old: old, new: new)
            }
        }
    }

    /// Removes every registration of `fd`.
    public func unregisterAll(fd: Int32) throws(LoopError) {
        try checkThread("unregisterAll")
        guard let entry = entry(fd) else { return }
        for r in entry.reads + entry.writes { try unregister(r) }
    }

    /// Unregisters `fd` and closes it once the current batch of events has
    /// been dispatched, so no event of this batch reaches a reused fd number.
    public func closeAfterBatch(fd: Int32) throws(LoopError) {
        try unregisterAll(fd: fd)
        if dispatchDepth == 0 {
            closeDescriptor(fd)
        } else if !pendingCloses.contains(fd) {
            pendingCloses.append(fd)
        }
    }

    /// Work the loop runs at the top of each poll, and at the end of a quickpoll, while
    /// `needed()` says so (the UDP server's `needBottom`). Keep the handle to remove it.
    @discardableResult
    public func addBottomHalf(needed: @escaping () -> Bool, run: @escaping () -> Void) throws(LoopError) -> BottomHalf {
        try checkUsable("addBottomHalf")
        let half = BottomHalf(needed: needed, run: run)
        bottomHalves.append(half)
        return half
    }

    public func removeBottomHalf(_ half: BottomHalf) throws(LoopError) {
        try checkThread("removeBottomHalf")
        half.isActive = false
        bottomHalves.removeAll { $0 === half }
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
    /// when nil, as `run()` waits: until the next sleep callback is due, a descriptor
    /// is ready, a wake-up or a signal arrives.
    public func runOnce(maxWaitMs: Int?) throws(LoopError) {
        try checkUsable("runOnce")
        if let maxWaitMs, maxWaitMs < 0 { throw .invalidPeriod(maxWaitMs) }
        refreshClock()
        signals.needsToQuickPoll.store(false, ordering: .relaxed)
        try poll(quick: false, maxWaitMs: maxWaitMs)
    }

    /// Asks `run()` to return `.stopped` after the current iteration. Loop thread only;
    /// from elsewhere use `stopHandle`.
    public func stop() {
        signals.requestShutdown(.stopped)
    }

    /// The shutdown requested and not yet consumed, if any (see `takeShutdownRequest`).
    public var shutdownReason: ShutdownReason? { signals.shutdownReason }

    /// Consumes the next shutdown request, as `run()` does when it returns it. A
    /// program that drives the loop with `runOnce()` calls this when it acts on a
    /// request: one left unconsumed is handed back to the process by `close()`.
    public func takeShutdownRequest() -> ShutdownReason? { signals.takeShutdownRequest() }

    /// A Sendable handle other threads use to wake or stop the loop. Safe at any
    /// time, also after `close()` (it then reaches nothing) and in a forked child
    /// (where it does nothing: the loop is the parent's).
    public var stopHandle: LoopStopHandle {
        LoopStopHandle(signals: signals, waker: backend.waker, forkGeneration: forkGeneration)
    }

    /// Wakes the loop from any thread; the same guarantees as `stopHandle`.
    public var waker: any LoopWaker { stopHandle }

    /// Tears the loop down: stops the workers, releases every callback and
    /// undoes every process-wide change the backend made. Registered fds are left
    /// open; they belong to their owners. Every admin signal recorded but never
    /// consumed (by `run()` or `takeShutdownRequest()`) is handed back to the
    /// process (raised again), so the embedder's own disposition sees it.
    /// In a forked child it only releases the child's copies of the descriptors.
    public func close() throws(LoopError) {
        if !isForkedChild { try checkThread("close") }
        guard !isClosed else { return }
        closeResources()
    }

    private var isForkedChild: Bool { shim_fork_generation() != forkGeneration }

    /// Safe against re-entrancy: everything is taken out of the loop before
    /// anything is released, so a deinit that runs meanwhile and unregisters,
    /// removes a bottom half, submits or closes finds a consistent, closed loop.
    private func closeResources() {
        isClosed = true
        let forkedChild = isForkedChild
        if let workers {
            if forkedChild {
                // Its threads are the parent's; its lock and condition may be held by
                // threads that do not exist here. Never joined, never freed.
                _ = Unmanaged.passRetained(workers)
            } else {
                workers.shutdown()
            }
        }
        workers = nil
        let closes = pendingCloses
        pendingCloses = []
        for fd in closes { closeDescriptor(fd) }

        let entries = descriptors, sleeping = sleepers.all, jobs = completions, halves = bottomHalves
        descriptors = []
        readOrder.removeAll()
        writeOrder.removeAll()
        sleepers.removeAll()
        sleeperOwners = [:]
        completions = [:]
        bottomHalves = []
        liveRegistrations = 0
        backgroundRegistrations = 0
        var callbacks: [Any] = []
        for entry in entries {
            for r in (entry?.reads ?? []) + (entry?.writes ?? []) { if let c = r.detach() { callbacks.append(c) } }
        }
        for r in sleeping { if let c = r.detach() { callbacks.append(c) } }
        for half in halves { half.isActive = false }

        if forkedChild {
            backend.abandon()
        } else {
            backend.stop()
            for signo in signals.takeAllShutdownSignals() { kill(getpid(), signo) }
        }
        withExtendedLifetime((entries, sleeping, jobs, halves, callbacks)) {}
    }

    // MARK: Quickpoll

    /// True when long work at niceness > 0 should call `quickPoll` now.
    public var needsToQuickPoll: Bool {
        backend.pollQuickPollTimer()
        return signals.needsToQuickPoll.load(ordering: .acquiring)
    }

    /// The original's `QUICKPOLL(niceness)`: cheap enough for inner loops.
    @inline(__always)
    public func quickPollIfNeeded(niceness: Int) {
        guard niceness > 0, !inQuickPoll, needsToQuickPoll else { return }
        _ = quickPoll(niceness: niceness)
    }

    /// Serves ready niceness-0 descriptors and due niceness-0 sleep callbacks from
    /// inside long background work. Returns false when refused (niceness 0,
    /// re-entry, wrong thread or closed loop).
    @discardableResult
    public func quickPoll(niceness: Int) -> Bool {
        guard niceness > 0, !isClosed, shim_thread_token() == owner, !isForkedChild else { return false }
        guard !inQuickPoll else {
            stats.quickPollsRefused += 1
            return false
        }
        inQuickPoll = true
        signals.inQuickPoll.store(true, ordering: .relaxed)
        stats.quickPolls += 1
        let savedNiceness = self.niceness
        defer {
            self.niceness = savedNiceness
            inQuickPoll = false
            signals.inQuickPoll.store(false, ordering: .relaxed)
            signals.needsToQuickPoll.store(false, ordering: .relaxed)
        }
        try? poll(quick: true, maxWaitMs: 0)
        runSleepers(urgentOnly: true)
        // Once more before the long callback resumes: what the quickpoll's callbacks left
        // for a bottom half (a datagram another component sent) does not wait for it.
        if !isClosed { runBottomHalves() }
        return true
    }

    /// True iff `niceness > 0` and the loop is not shutting down or between disable/enableTimer.
    public func canQuickPoll(_ niceness: Int) -> Bool {
        niceness > 0 && timersEnabled && signals.shutdownReason == nil
    }

    /// Stops the timers (around `system()`/`popen()`-style child creation).
    public func disableTimer() throws(LoopError) {
        try checkUsable("disableTimer")
        timersEnabled = false
        backend.setTimersEnabled(false)
    }

    public func enableTimer() throws(LoopError) {
        try checkUsable("enableTimer")
        timersEnabled = true
        backend.setTimersEnabled(true)
    }

    public func interruptsOff() throws(LoopError) {
        try checkUsable("interruptsOff")
        setInterrupts(false)
    }

    public func interruptsOn() throws(LoopError) {
        try checkUsable("interruptsOn")
        setInterrupts(true)
    }

    private func setInterrupts(_ enabled: Bool) {
        interruptsEnabled = enabled
        backend.setInterruptsEnabled(enabled)
    }

    // MARK: Workers

    /// Runs `work` on a worker thread and `completion(result)` later on the loop thread.
    /// Completions of niceness-0 jobs run before those of background jobs.
    public func submit<T: Sendable>(niceness: Int = 0, _ work: @escaping @Sendable () -> T,
                                    completion: @escaping (T) -> Void) throws(LoopError) {
        try checkUsable("submit")
        try checkNiceness(niceness)
        if workers == nil {
            workers = WorkerPool(threads: configuration.workerThreads, signals: signals, waker: backend.waker)
        }
        nextJobID += 1
        let id = nextJobID
        completions[id] = { completion($0 as! T) }
        workers!.submit(.init(id: id, niceness: niceness, work: { work() }))
    }

    /// Jobs submitted whose completion has not run yet.
    public var pendingJobs: Int { completions.count }

    /// Jobs a worker has finished whose completion has not run yet (the next
    /// poll runs it). Loop thread; workers may add to it meanwhile.
    public var finishedJobs: Int { workers?.finishedJobs ?? 0 }

    // MARK: Counters

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
        c.registrations = liveRegistrations
        c.cpuUsage = signals.cpuUsage
        return c
    }

    // MARK: The poll (the original's doPoll)

    private func poll(quick: Bool, maxWaitMs: Int?) throws(LoopError) {
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
        }
        dispatchDepth -= 1
        if quick { quickEvents = batch } else { events = batch }
        if dispatchDepth == 0 && !pendingCloses.isEmpty {
            for fd in pendingCloses { closeDescriptor(fd) }
            pendingCloses.removeAll()
        }
    }

    /// 0 when work is already waiting, else until the next sleep scan, or -1 (no
    /// limit) when no sleep callback is registered: readiness, a wake-up or a signal
    /// ends the wait. The loop has no tick of its own; a backend may still cap the
    /// wait (legacy: select's 10 ms, as the original). A recorded shutdown is not
    /// work: `run()` returns before it waits, and `runOnce()` during a drain must not spin.
    private func waitTimeout(atMost limit: Int?) -> Int {
        if signals.needsCleanup.load(ordering: .acquiring) { return 0 }
        if bottomHalves.contains(where: { $0.needed() }) { return 0 }
        // The clock went back while the loop was working: the deadlines below are in the
        // old time and would mean a wait as long as the step. Scan now (which resets them).
        if now < lastSleepRun || now < sleepers.latestLastCall { return 0 }
        // Nothing scheduled (none registered, or all paused): no deadline at all.
        let (untilSleepScan, overflow) = nextSleepScan.subtractingReportingOverflow(now)
        let wait = min(overflow ? .max : max(0, untilSleepScan), Int64(limit ?? Int.max))
        return wait > Int64(Int32.max) ? -1 : Int(wait)
    }

    /// Pass 1 (`urgent`) runs the niceness-0 registrations of every ready fd;
    /// pass 2 the niceness > 0 ones. Reads before writes in each pass, the fds of
    /// each in `DispatchOrder`, fixed when the kind's turn begins.
    private func dispatch(_ batch: [ReadyEvent], urgent: Bool) {
        if !urgent && backgroundRegistrations == 0 { return }
        var ranked: [RankedEvent] = []
        swap(&ranked, &rankedBuffer)
        defer { swap(&ranked, &rankedBuffer) }
        for kind in [Registration.Kind.read, .write] {
            ranked.removeAll(keepingCapacity: true)
            var sorted = true
            for event in batch where kind == .read ? event.readable : event.writable {
                guard let entry = entry(event.fd), entry.generation == event.generation else {
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
                guard let entry = entry(item.fd), entry.generation == item.generation else {
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
        return max(overflow ? .max : afterTick, sleepers.earliestDue)
    }

    /// Calls the due sleep callbacks, newest registration first; a last-call time in
    /// the future (the clock went back) is reset to now. The due set is fixed when the
    /// scan begins (one registered meanwhile waits for the next scan); each is checked
    /// again before its call, as a quickpoll inside an earlier callback may have run it.
    private func runSleepers(urgentOnly: Bool) {
        if now < sleepers.latestLastCall { sleepers.resetFuture(to: now) { !urgentOnly || $0.niceness == 0 } }
        // Removed or paused by an earlier callback of this scan: not called.
        for r in sleepers.due(at: now) where r.isActive && r.isScheduled && (!urgentOnly || r.niceness == 0) {
            guard r.nextDue <= now else { continue }
            sleepers.called(r, at: now)
            stats.sleepCallbacks += 1
            call(r)
        }
    }

    private func runBottomHalves() {
        for half in bottomHalves where half.isActive && half.needed() { half.run() }
    }

    /// The original's `timedCleanUp`: runs finished jobs' completions until the budget is spent.
    private func runCompletions(budgetMs: Int64, urgentOnly: Bool) {
        guard let workers else {
            // A SIGCHLD from a child process, not a worker: nothing to collect.
            signals.needsCleanup.store(false, ordering: .relaxed)
            return
        }
        if !urgentOnly || !workers.hasFinished {
            // Clear before taking, so a job finishing meanwhile raises it again (and wakes us).
            signals.needsCleanup.store(false, ordering: .sequentiallyConsistent)
        }
        guard workers.hasFinished else { return }
        let deadline = monotonicNanoseconds() + budgetMs * 1_000_000
        while true {
            let finished = workers.takeFinished(urgentOnly: urgentOnly, limit: 16)
            if finished.isEmpty { break }
            for job in finished {
                guard let completion = completions.removeValue(forKey: job.id) else { continue }
                let saved = niceness
                niceness = min(max(job.niceness, 0), 1)
                stats.jobsCompleted += 1
                completion(job.result)
                niceness = saved
            }
            if monotonicNanoseconds() >= deadline { break }
        }
        if workers.hasFinished { signals.needsCleanup.store(true, ordering: .relaxed) }
    }

    private func refreshClock() {
        now = configuration.clock.milliseconds()
        signals.nowApprox.store(now, ordering: .relaxed)
    }

    // MARK: Helpers

    private func register(kind: Registration.Kind, fd: Int32, niceness: Int, owner: AnyHashable?,
                          _ callback: @escaping (Int32) -> Void) throws(LoopError) -> Registration {
        try checkUsable(kind == .read ? "registerRead" : "registerWrite")
        guard fd >= 0 else { throw .invalidDescriptor(fd) }
        if let limit = backend.descriptorLimit, fd >= limit { throw .descriptorOutOfRange(fd: fd, limit: limit) }
        try checkNiceness(niceness)
        let existing = entry(fd)
        if let owner, let entry = existing,
           let same = (kind == .read ? entry.reads : entry.writes).first(where: { $0.owner == owner }) {
            // Re-armed all the same: the number may name another file now (closed
            // without unregistering, then reused), which the backend does not watch yet.
            try backend.prepare(fd: fd)
            try backend.setInterest(fd: fd, generation: entry.generation, old: entry.interest, new: entry.interest)
            return same
        }
        try reserveRegistration()
        // Every time, not only for a new entry: the number may now name another file.
        do { try backend.prepare(fd: fd) } catch {
            liveRegistrations -= 1
            throw error
        }
        let entry: DescriptorEntry
        if let existing {
            entry = existing
        } else {
            nextGeneration &+= 1
            if nextGeneration == 0 { nextGeneration = 1 }  // 0 marks the backends' own descriptors
            entry = DescriptorEntry(generation: nextGeneration)
        }
        let r = Registration(kind: kind, fd: fd, niceness: niceness, owner: owner, tick: 0, now: now,
                             fdCallback: callback, sleepCallback: nil)
        let old = existing?.interest ?? []
        let firstOfKind = (kind == .read ? entry.reads : entry.writes).isEmpty
        if kind == .read { entry.reads.insert(r, at: 0) } else { entry.writes.insert(r, at: 0) }
        let new = entry.interest
        // Told even when the interest is unchanged: if the owner closed the fd
        // without unregistering and this is a new file under the same number,
        // the kernel (or select's EBADF clean-up) has forgotten it.
        do {
            try backend.setInterest(fd: fd, generation: entry.generation, old: old, new: new)
        } catch {
            if kind == .read { entry.reads.removeFirst() } else { entry.writes.removeFirst() }
            liveRegistrations -= 1
            throw error
        }
        if niceness > 0 { backgroundRegistrations += 1 }
        if firstOfKind {
            if kind == .read { readOrder.append(entry) } else { writeOrder.append(entry) }
        }
        if existing == nil {
            if descriptors.count <= Int(fd) { descriptors.append(contentsOf: repeatElement(nil, count: Int(fd) + 1 - descriptors.count)) }
            descriptors[Int(fd)] = entry
        }
        return r
    }

    private func reserveRegistration() throws(LoopError) {
        guard liveRegistrations < configuration.maxRegistrations else {
            throw .noEmptySlots(limit: configuration.maxRegistrations)
        }
        liveRegistrations += 1
    }

    @inline(__always)
    private func entry(_ fd: Int32) -> DescriptorEntry? {
        fd >= 0 && Int(fd) < descriptors.count ? descriptors[Int(fd)] : nil
    }

    @inline(__always)
    private func checkThread(_ operation: String) throws(LoopError) {
        guard shim_thread_token() == owner else { throw .wrongThread(operation: operation) }
        guard !isForkedChild else { throw .forkedChild(operation: operation) }
    }

    private func checkNiceness(_ niceness: Int) throws(LoopError) {
        guard (0...2).contains(niceness) else { throw .invalidNiceness(niceness) }
    }

    private func checkUsable(_ operation: String) throws(LoopError) {
        try checkThread(operation)
        guard !isClosed else { throw .closed }
    }
}

/// A ready descriptor with its place in the dispatch order.
struct RankedEvent {
    let rank: Int
    let fd: Int32
    let generation: UInt32
}

/// A bottom half registered with `addBottomHalf`.
public final class BottomHalf {
    let needed: () -> Bool
    let run: () -> Void
    /// False once removed: a pass in progress skips it.
    @exclusivity(unchecked) var isActive = true
    init(needed: @escaping () -> Bool, run: @escaping () -> Void) {
        self.needed = needed
        self.run = run
    }
}

/// Stops or wakes a loop from any thread. In a forked child it does nothing:
/// the loop, and the eventfd or thread it would reach, are the parent's.
public struct LoopStopHandle: LoopWaker {
    let signals: LoopSignals
    let backendWaker: any LoopWaker
    let forkGeneration: Int32

    init(signals: LoopSignals, waker: any LoopWaker, forkGeneration: Int32) {
        self.signals = signals
        self.backendWaker = waker
        self.forkGeneration = forkGeneration
    }

    public func stop() {
        guard shim_fork_generation() == forkGeneration else { return }
        signals.requestShutdown(.stopped)
        backendWaker.wakeup()
    }

    public func wakeup() {
        guard shim_fork_generation() == forkGeneration else { return }
        backendWaker.wakeup()
    }
}
