import Compat
import Glibc
import LoopCore
import Synchronization

/// The clock a scripted loop reads: it moves only when the script says so.
public final class ManualClock: Sendable {
    private let value: Atomic<Int64>
    public init(start: Int64 = 1_000_000) { value = Atomic(start) }
    public var now: Int64 { value.load(ordering: .relaxed) }
    public func advance(by ms: Int64) { value.add(ms, ordering: .relaxed) }
    public var loopClock: LoopClock { LoopClock { self.now } }
}

/// Runs a script on a real loop and writes down what the loop did.
///
/// Deterministic by construction: slot `k` is descriptor `baseDescriptor + k`;
/// the clock is manual; each `once` is preceded by a wake-up so that the wait
/// returns what is ready without waiting for a timer; a job's completion is
/// awaited on its worker before the script goes on, so the poll that runs it is
/// known. A callback of a registration whose number was closed or given another
/// file since (an *orphan*: a declared difference between the loops) is written
/// as such and runs no body, so that what it would do cannot spread.
public final class ScriptRunner {
    /// Descriptor numbers of the slots: above anything a test process holds, below `FD_SETSIZE`.
    public static let baseDescriptor: Int32 = 700

    /// The loop configuration a scripted run uses: the manual clock; the rest as given.
    public static func configuration(_ base: LoopConfiguration, clock: ManualClock) -> LoopConfiguration {
        var c = base
        c.clock = clock.loopClock
        return c
    }

    private let loop: EventLoop
    private let clock: ManualClock
    private var trace = Trace()
    /// The latest handle per registration id.
    private var handles: [Int: Registration] = [:]
    /// Per registration: whether its number changed files since it was made.
    private final class Watch {
        var orphaned = false
        weak var registration: Registration?
    }
    /// Keyed by the registration, which the value keeps alive so the key stays unique.
    private var watches: [ObjectIdentifier: (Registration, Watch)] = [:]
    private var watchesBySlot: [Int: [Watch]] = [:]
    /// Slots `closeAfterBatch` will close when the current poll ends.
    private var closingSlots: Set<Int> = []
    /// Which open file each slot names, by a token of the runner's: `dup` copies it.
    private var fileOf: [Int: Int] = [:]
    private var nextFile = 0
    /// Socket ends: the peer's token, and writes queued at the peer since it last drained.
    private var socketPeer: [Int: Int] = [:]
    private var queuedWrites: [Int: Int] = [:]
    private var onceCount = 0
    private var depth = 0
    private var jobsSubmitted = 0
    private var completionsRunning = 0
    /// Per wait in progress (a `once`, and a quickpoll inside it): the slots that had a
    /// live registration made since their file last changed. What a wait reports for
    /// any other registered number is a declared difference (see `Trace.normalized`).
    private var rearmedAtWait: [Set<Int>] = []

    private func rearmedSlots() -> Set<Int> {
        Set(watchesBySlot.filter { $0.value.contains { !$0.orphaned && $0.registration?.isActive == true } }.map(\.key))
    }

    /// `loop` must read `clock` (see `configuration(_:clock:)`) and be fresh.
    public init(loop: EventLoop, clock: ManualClock) {
        self.loop = loop
        self.clock = clock
    }

    /// Runs `script`, closes the loop and every slot, and returns the trace.
    /// Throws only when the harness itself cannot work (a slot's number is taken).
    public func run(_ script: Script) throws(ScriptHarnessError) -> Trace {
        try Self.makeSlotsUsable()
        for slot in scriptSlots where fcntl(fd(slot), F_GETFD) >= 0 {
            throw ScriptHarnessError("descriptor \(fd(slot)) (slot s\(slot)) is already open in this process")
        }
        defer {
            try? loop.close()
            for slot in scriptSlots { _ = Glibc.close(fd(slot)) }
            watches = [:]
            watchesBySlot = [:]
            handles = [:]
            fileOf = [:]
            socketPeer = [:]
            queuedWrites = [:]
        }
        for step in script.steps { perform(step, niceness: 0) }
        return trace
    }

    private func fd(_ slot: Int) -> Int32 { Self.baseDescriptor + Int32(slot) }

    /// The slots' numbers must be below the soft descriptor limit: raised to the hard
    /// one if need be, or the harness cannot run (not a divergence).
    static func makeSlotsUsable() throws(ScriptHarnessError) {
        let needed = rlim_t(baseDescriptor) + rlim_t(scriptSlots.count)
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        guard limit.rlim_cur < needed else { return }
        guard limit.rlim_max >= needed else {
            throw ScriptHarnessError(
                "scripts need descriptors up to \(needed - 1); the hard limit is \(limit.rlim_max)")
        }
        limit.rlim_cur = needed
        guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
            throw ScriptHarnessError("cannot raise the descriptor limit to \(needed): errno \(errno)")
        }
    }

    private func note(_ line: String) { trace.lines.append(line) }

    /// The number of `slot` now names another file (`file`, or none): its registrations are orphans.
    private func fileChanged(_ slot: Int, to file: Int?) {
        for w in watchesBySlot[slot] ?? [] { w.orphaned = true }
        watchesBySlot[slot] = nil
        fileOf[slot] = file
    }

    @discardableResult
    private func place(_ descriptor: Int32, at slot: Int) -> Int {
        nextFile += 1
        fileChanged(slot, to: nextFile)
        if descriptor != fd(slot) {
            dup2(descriptor, fd(slot))
            Glibc.close(descriptor)
        }
        _ = fcntl(fd(slot), F_SETFD, FD_CLOEXEC)
        return nextFile
    }

    // MARK: Steps

    private func perform(_ step: Step, niceness: Int) {
        switch step {
        case .pipe(let r, let w):
            var fds: [Int32] = [-1, -1]
            guard Glibc.pipe(&fds) == 0 else { return note("pipe failed errno \(errno)") }
            for f in fds { _ = fcntl(f, F_SETFL, fcntl(f, F_GETFL) | O_NONBLOCK) }
            place(fds[0], at: r)
            place(fds[1], at: w)
        case .socketPair(let a, let b):
            var fds: [Int32] = [-1, -1]
            guard
                socketpair(
                    AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue),
                    0, &fds) == 0
            else { return note("socketpair failed errno \(errno)") }
            let (x, y) = (place(fds[0], at: a), place(fds[1], at: b))
            (socketPeer[x], socketPeer[y]) = (y, x)
        case .regularFile(let s):
            var template = Array("/tmp/loop-script-XXXXXX".utf8CString)
            let descriptor = mkstemp(&template)
            guard descriptor >= 0 else { return note("file failed errno \(errno)") }
            template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
            place(descriptor, at: s)
        case .write(let s, let n):
            // A socket end takes at most `socketWriteLimit` writes until its peer drains:
            // beyond that its writability depends on the kernel's buffer accounting.
            if let token = fileOf[s], socketPeer[token] != nil {
                guard queuedWrites[token, default: 0] < socketWriteLimit else { return }
                queuedWrites[token, default: 0] += 1
            }
            let bytes = [UInt8](repeating: 0x61, count: n)
            _ = Glibc.write(fd(s), bytes, n)
        case .fill(let s):
            let chunk = [UInt8](repeating: 0x62, count: 65_536)
            var written = 0
            // Bounded: a regular file never refuses.
            while written < 4 << 20 {
                let n = Glibc.write(fd(s), chunk, chunk.count)
                if n <= 0 { break }
                written += n
            }
        case .drain(let s):
            if let token = fileOf[s], let peer = socketPeer[token] { queuedWrites[peer] = 0 }
            var buffer = [UInt8](repeating: 0, count: 65_536)
            var total = 0
            while total < 64 << 20 {
                let n = read(fd(s), &buffer, buffer.count)
                if n <= 0 { break }
                total += n
            }
        case .close(let s):
            fileChanged(s, to: nil)
            Glibc.close(fd(s))
        case .dup(let from, let to):
            guard from != to, let file = fileOf[from] else { return }
            // The same open file again: the number's watch is unchanged (the kernel drops an
            // epoll entry with the file's last reference, not with a descriptor).
            if fileOf[to] != file { fileChanged(to, to: file) }
            dup2(fd(from), fd(to))
            _ = fcntl(fd(to), F_SETFD, FD_CLOEXEC)
        case .watch(let id, let kind, let s, let n, let owner, let body):
            let watch = Watch()
            register(id: id, what: "r\(id)", slot: s, watch: watch) { () throws(LoopError) in
                let callback: (Int32) -> Void = { [unowned self] _ in
                    self.called(id: id, kind: kind, slot: s, watch: watch, body: body)
                }
                let o = owner.map { AnyHashable($0) }
                return kind == .read
                    ? try loop.registerRead(fd: fd(s), niceness: n, owner: o, callback)
                    : try loop.registerWrite(fd: fd(s), niceness: n, owner: o, callback)
            }
        case .sleep(let id, let period, let n, let owner, let body):
            register(id: id, what: "r\(id)", slot: -1, watch: Watch()) { () throws(LoopError) in
                try loop.registerSleep(every: period, niceness: n, owner: owner.map { AnyHashable($0) }) {
                    [unowned self] in
                    self.note(
                        TraceLine.sleep(
                            id: id, quick: self.loop.inQuickPoll, niceness: self.loop.niceness, depth: self.depth))
                    self.nested(body, niceness: n)
                }
            }
        case .after(let id, let ms, let n, let owner, let body):
            register(id: id, what: "r\(id)", slot: -1, watch: Watch()) { () throws(LoopError) in
                try loop.after(ms: ms, niceness: n, owner: owner.map { AnyHashable($0) }) { [unowned self] in
                    self.note(TraceLine.timer(id: id, niceness: self.loop.niceness, depth: self.depth))
                    self.nested(body, niceness: n)
                }
            }
        case .unregister(let id):
            guard let r = handles[id] else { return }
            do { try loop.unregister(r) } catch {
                note(TraceLine.error("unreg r\(id)", kind: TraceLine.errorKind(error), depth: depth))
            }
        case .unregisterAll(let s):
            do { try loop.unregisterAll(fd: fd(s)) } catch {
                note(TraceLine.error("unregall s\(s)", kind: TraceLine.errorKind(error), depth: depth))
            }
        case .closeAfterBatch(let s):
            do {
                try loop.closeAfterBatch(fd: fd(s))
                if depth == 0 { fileChanged(s, to: nil) } else { closingSlots.insert(s) }
            } catch {
                note(TraceLine.error("closeafter s\(s)", kind: TraceLine.errorKind(error), depth: depth))
            }
        case .job(let id, let n, let body):
            submit(id: id, niceness: n, body: body)
        case .quickPoll:
            let refusedBefore = loop.counters.quickPollsRefused
            rearmedAtWait.append(rearmedSlots())
            defer { rearmedAtWait.removeLast() }
            if loop.quickPoll(niceness: niceness) {
                note(TraceLine.note("quickpoll ran", depth: depth))
            } else if loop.counters.quickPollsRefused > refusedBefore {
                note(TraceLine.note("quickpoll refused", depth: depth))
            }
        case .stop:
            loop.stop()
        case .clock(let d):
            clock.advance(by: Int64(d))
        case .runOnce:
            onceCount += 1
            note(TraceLine.once(onceCount))
            loop.waker.wakeup()
            rearmedAtWait = [rearmedSlots()]
            defer { rearmedAtWait = [] }
            do { try loop.runOnce() } catch {
                note(TraceLine.error("once", kind: TraceLine.errorKind(error), depth: 0))
            }
            for s in closingSlots { fileChanged(s, to: nil) }
            closingSlots = []
            let c = loop.counters
            note(
                TraceLine.counters(
                    polls: c.polls, quickPolls: c.quickPolls, refused: c.quickPollsRefused,
                    sleeps: c.sleepCallbacks, jobs: c.jobsCompleted, registrations: c.registrations,
                    pendingJobs: loop.pendingJobs))
        case .run:
            guard loop.shutdownReason != nil else { return note("run skipped") }
            do { note("run -> " + TraceLine.reason(try loop.run())) } catch {
                note(TraceLine.error("run", kind: TraceLine.errorKind(error), depth: 0))
            }
        case .takeShutdown:
            note("take -> " + TraceLine.reason(loop.takeShutdownRequest()))
        case .signal(let signal, let count):
            for _ in 0..<count { kill(getpid(), signal.number) }
            note("signal \(signal.rawValue) \(count)")
            perform(.runOnce, niceness: 0)
        case .signalCounts:
            perform(.runOnce, niceness: 0)
            let c = loop.counters
            note("signals pipe=\(c.sigPipes > 0 ? "yes" : "no") io=\(c.sigIOs > 0 ? "yes" : "no")")
        case .child:
            do {
                note("child -> " + TraceLine.ending(try ChildProcesses.system("kill -TERM $$; exit 7")))
            } catch {
                note("child error \(error)")
            }
        case .secondLoop:
            do {
                let second = try Loop.make(.epoll, configuration: LoopConfiguration())
                second.waker.wakeup()
                try second.runOnce()
                try second.close()
                note("secondloop ok")
            } catch {
                note(TraceLine.error("secondloop", kind: TraceLine.errorKind(error), depth: 0))
            }
        }
    }

    /// `slot` -1 for a sleep callback.
    private func register(id: Int, what: String, slot: Int, watch: Watch, _ make: () throws(LoopError) -> Registration)
    {
        do {
            let r = try make()
            handles[id] = r
            if let (_, first) = watches[ObjectIdentifier(r)] {
                // The same owner again: the first handle, registered again, so it watches
                // the number's current file (the loop re-arms it).
                if first.orphaned, slot >= 0 {
                    first.orphaned = false
                    watchesBySlot[slot, default: []].append(first)
                }
            } else {
                watch.registration = r
                watches[ObjectIdentifier(r)] = (r, watch)
                if slot >= 0 { watchesBySlot[slot, default: []].append(watch) }
            }
        } catch {
            note(TraceLine.error(what, kind: TraceLine.errorKind(error), depth: depth))
        }
    }

    private func called(id: Int, kind: WatchKind, slot: Int, watch: Watch, body: [Step]) {
        let pass = loop.inQuickPoll ? "q" : (loop.niceness == 0 ? "p1" : "p2")
        let orphan = watch.orphaned || !(rearmedAtWait.last?.contains(slot) ?? false)
        note(
            TraceLine.call(
                id: id, kind: kind, slot: slot, pass: pass, niceness: loop.niceness, depth: depth, orphan: orphan))
        if !orphan { nested(body, niceness: loop.niceness) }
    }

    private func nested(_ body: [Step], niceness: Int) {
        depth += 1
        defer { depth -= 1 }
        for step in body where !step.isTopLevelOnly { perform(step, niceness: niceness) }
    }

    private func submit(id: Int, niceness: Int, body: [Step]) {
        guard jobsSubmitted < scriptJobLimit else {
            return note(TraceLine.note("job j\(id) over the limit", depth: depth))
        }
        guard completionsRunning == 0 else {
            return note(TraceLine.note("job j\(id) inside a completion", depth: depth))
        }
        let before = loop.finishedJobs
        do {
            try loop.submit(niceness: niceness, { () }) { [unowned self] (_: ()) in
                self.note(TraceLine.job(id: id, niceness: self.loop.niceness, depth: self.depth))
                self.completionsRunning += 1
                self.nested(body, niceness: self.loop.niceness)
                self.completionsRunning -= 1
            }
        } catch {
            return note(TraceLine.error("job j\(id)", kind: TraceLine.errorKind(error), depth: depth))
        }
        jobsSubmitted += 1
        // Finished on its worker before the script goes on: the poll that completes it is then known.
        let deadline = monotonicNanoseconds() + 10_000_000_000
        while loop.finishedJobs <= before && monotonicNanoseconds() < deadline { usleep(50) }
        if loop.finishedJobs <= before { note(TraceLine.note("job j\(id) did not finish within 10 s", depth: depth)) }
    }
}

/// The harness could not run a script at all (not a divergence).
public struct ScriptHarnessError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
