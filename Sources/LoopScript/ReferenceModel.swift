/// The semantics a migrated loop must have, as a plain model: no descriptors,
/// no syscalls, no clock but the script's. It predicts a script's trace from the
/// legacy loop's rules (../shared/reference, Loop.cpp) and the port's declared
/// differences (MIGRATION.md), each a named switch in `ModelRules`, so that a
/// declared difference is one rule and not a tolerance.
///
/// An independent oracle: it shares only the trace's spelling with the core.
/// Readiness comes from what the script did to its files, by the kernel's rules
/// for pipes, AF_UNIX stream sockets and regular files as select reports them.
public struct ModelRules: Sendable, Equatable, CustomStringConvertible {
    /// Which registrations of a ready fd run in which pass.
    public enum Passes: String, Sendable { case perRegistration, byChainHead }
    /// Events of a registration that went away (and maybe came back) earlier in the batch.
    public enum StaleEvents: String, Sendable { case dropped, delivered }
    /// The order of ready fds within a pass.
    public enum Order: String, Sendable { case registrationList, liveList, reversedList }
    /// When the sleep chain is scanned.
    public enum SleepScan: String, Sendable { case earliestDue, everyMinTick }
    /// What a quickpoll inside a callback does to the chain that callback belongs to.
    public enum NestedQuickPoll: String, Sendable { case chainContinues, chainCut }

    /// Port (MIGRATION.md "Niceness passes"): niceness-0 registrations of every ready fd
    /// in pass 1, niceness > 0 ones in pass 2. Original: the chain's head decides the
    /// pass of the whole chain, and pass 2 runs every registration of it.
    public var passes = Passes.perRegistration
    /// Port (MIGRATION.md "Stale events"): dropped. Original: an fd in the select
    /// result has its current chain called, whatever happened to it since.
    public var staleEvents = StaleEvents.dropped
    /// The order in which fds got their first registration of the kind, a removed
    /// fd's place taken by the last (the original's `s_readFds`). Port: the order as
    /// it stands when the pass begins. Original: the list walked while callbacks
    /// change it (a removal can move an fd not yet visited into a visited place).
    /// `reversedList` exists to plant a divergence and see the differ catch it.
    public var order = Order.registrationList
    /// Port (MIGRATION.md "Minimum tick"): every `minTick` ms but not before some
    /// callback is due. Original: whenever `minTick` ms have passed since the last scan.
    public var sleepScan = SleepScan.earliestDue
    /// Port: the chain goes on. Original: a quickpoll resets the global "next
    /// registration" pointer of the chain walk, and the rest of the chain waits a poll.
    public var nestedQuickPoll = NestedQuickPoll.chainContinues

    public init(passes: Passes = .perRegistration, staleEvents: StaleEvents = .dropped, order: Order = .registrationList,
                sleepScan: SleepScan = .earliestDue, nestedQuickPoll: NestedQuickPoll = .chainContinues) {
        self.passes = passes
        self.staleEvents = staleEvents
        self.order = order
        self.sleepScan = sleepScan
        self.nestedQuickPoll = nestedQuickPoll
    }

    /// What the port promises.
    public static let port = ModelRules()
    /// The original's rules where the port declares a difference.
    public static let original = ModelRules(passes: .byChainHead, staleEvents: .delivered, order: .liveList,
                                            sleepScan: .everyMinTick, nestedQuickPoll: .chainCut)

    public var description: String {
        "passes=\(passes.rawValue) stale=\(staleEvents.rawValue) order=\(order.rawValue) "
            + "sleepScan=\(sleepScan.rawValue) nestedQuickPoll=\(nestedQuickPoll.rawValue)"
    }
}

public final class ReferenceModel {
    // MARK: Files, as the kernel keeps them

    /// Linux's pipe: 16 page buffers; a write of at most PIPE_BUF bytes joins the last
    /// page if it fits whole, else takes a page of its own, else is refused whole.
    /// The ends are weak: a file is owned by the slots that name it (and gone with the last).
    private final class Pipe {
        var pages: [Int] = []
        weak var reader: File?
        weak var writer: File?
        var full: Bool { pages.count >= 16 }
    }

    private final class SocketPair {
        var inbound = [0, 0]
        /// End i wrote until refused: its data sits in the peer's queue.
        var full = [false, false]
        /// Writes end i has queued at its peer since the peer drained (`socketWriteLimit`).
        var queued = [0, 0]
        weak var first: File?
        weak var second: File?
        func end(_ i: Int) -> File? { i == 0 ? first : second }
    }

    private final class File {
        enum Kind { case pipeRead(Pipe), pipeWrite(Pipe), socket(SocketPair, Int), regular }
        let kind: Kind
        /// Slots naming this open file; at 0 it is closed.
        var references = 0
        init(_ kind: Kind) { self.kind = kind }
        var isOpen: Bool { references > 0 }
    }

    private var slots = [File?](repeating: nil, count: scriptSlots.count)

    /// select's view: readable covers data, end of file, hang-up and error; writable covers space and error.
    private func readiness(_ file: File) -> (readable: Bool, writable: Bool) {
        switch file.kind {
        case .regular:
            return (true, true)
        case .pipeRead(let p):
            return (!p.pages.isEmpty || !(p.writer?.isOpen ?? false), false)
        case .pipeWrite(let p):
            let readerGone = !(p.reader?.isOpen ?? false)
            return (readerGone, readerGone || !p.full)
        case .socket(let pair, let end):
            let peerGone = !(pair.end(1 - end)?.isOpen ?? false)
            return (pair.inbound[end] > 0 || peerGone, peerGone || !pair.full[end])
        }
    }

    private func put(_ file: File?, at slot: Int) {
        if let old = slots[slot] { old.references -= 1 }
        file?.references += 1
        slots[slot] = file
        orphanRegistrations(of: slot)
    }

    /// A write (or `fill`: writes until refused). Writing where nobody can read raises SIGPIPE.
    private func write(_ slot: Int, bytes: Int, fill: Bool) {
        guard let file = slots[slot] else { return }
        switch file.kind {
        case .pipeWrite(let p):
            guard p.reader?.isOpen ?? false else { return sawPipe = true }
            if fill {
                p.pages = Array(repeating: 4096, count: 16)
            } else if let last = p.pages.last, last + bytes <= 4096 {
                p.pages[p.pages.count - 1] += bytes
            } else if !p.full {
                p.pages.append(bytes)
            }
        case .socket(let pair, let end):
            // Every write attempt counts against the limit (the script skips those beyond it).
            if !fill {
                guard pair.queued[end] < socketWriteLimit else { return }
                pair.queued[end] += 1
            }
            guard pair.end(1 - end)?.isOpen ?? false else { return sawPipe = true }
            guard !pair.full[end] else { return }
            if fill {
                pair.inbound[1 - end] += 1 << 16
                pair.full[end] = true
            } else {
                pair.inbound[1 - end] += bytes
            }
        case .pipeRead, .regular:
            return
        }
    }

    private func drain(_ slot: Int) {
        guard let file = slots[slot] else { return }
        switch file.kind {
        case .pipeRead(let p):
            p.pages = []
        case .socket(let pair, let end):
            pair.inbound[end] = 0
            pair.full[1 - end] = false
            pair.queued[1 - end] = 0
        case .pipeWrite, .regular:
            return
        }
    }

    // MARK: The loop, as the legacy semantics and the declared differences have it

    private final class Reg {
        let id: Int
        let kind: Kind
        let slot: Int
        let niceness: Int
        let owner: Int?
        let body: [Step]
        let period: Int64
        var lastCall: Int64
        var active = true
        var orphaned = false
        enum Kind { case read, write, sleep }
        init(id: Int, kind: Kind, slot: Int, niceness: Int, owner: Int?, body: [Step], period: Int64, lastCall: Int64) {
            (self.id, self.kind, self.slot, self.niceness, self.owner, self.body) = (id, kind, slot, niceness, owner, body)
            (self.period, self.lastCall) = (period, lastCall)
        }
        var watchKind: WatchKind { kind == .read ? .read : .write }
    }

    /// The registrations of one fd; a new entry is a new generation.
    private final class Entry {
        let generation: Int
        var reads: [Reg] = []   // head first
        var writes: [Reg] = []
        init(generation: Int) { self.generation = generation }
        var isEmpty: Bool { reads.isEmpty && writes.isEmpty }
    }

    private struct Job { let id: Int; let niceness: Int; let body: [Step] }

    public let rules: ModelRules
    private var entries: [Int: Entry] = [:]
    private var generations = 0
    /// The original's `s_readFds` / `s_writeFds`.
    private var readList: [Int] = []
    private var writeList: [Int] = []
    private var sleepers: [Reg] = []   // newest first
    private var handles: [Int: Reg] = [:]
    private var liveRegistrations = 0
    private var minTick: Int64 = 40
    private var lastSleepRun: Int64
    private var clock: Int64
    private var now: Int64
    private var inQuickPoll = false
    private var niceness = 0
    private var dispatchDepth = 0
    private var pendingCloses: [Int] = []
    private var finishedUrgent: [Job] = []
    private var finishedBackground: [Job] = []
    private var pendingJobs = 0
    private var jobsSubmitted = 0
    private var completionsRunning = 0
    private var shutdownRequested = false
    /// Admin signals received and not consumed.
    private var pendingSignals: Set<ProcessSignal> = []
    private var sawPipe = false, sawIO = false
    private var polls = 0, quickPolls = 0, refused = 0, sleepCalls = 0, jobsCompleted = 0
    private var onceCount = 0
    private var depth = 0
    private var trace = Trace()

    public init(rules: ModelRules = .port, clockStart: Int64 = 1_000_000) {
        self.rules = rules
        clock = clockStart
        now = clockStart
        lastSleepRun = clockStart
    }

    /// The trace the script should produce; a process-level script's ends with how its
    /// process ends (`end: …`), as `Differ.processTrace` records it for the loops.
    public static func predict(_ script: Script, rules: ModelRules = .port) -> Trace {
        let model = ReferenceModel(rules: rules)
        for step in script.steps { model.perform(step, niceness: 0) }
        if script.isProcessLevel { model.note("end: " + model.ending) }
        return model.trace
    }

    private func note(_ line: String) { trace.lines.append(line) }

    private func orphanRegistrations(of slot: Int) {
        guard let entry = entries[slot] else { return }
        for r in entry.reads + entry.writes { r.orphaned = true }
    }

    private func perform(_ step: Step, niceness: Int) {
        switch step {
        case .pipe(let r, let w):
            let p = Pipe()
            let reader = File(.pipeRead(p)), writer = File(.pipeWrite(p))
            (p.reader, p.writer) = (reader, writer)
            put(reader, at: r)
            put(writer, at: w)
        case .socketPair(let a, let b):
            let pair = SocketPair()
            let x = File(.socket(pair, 0)), y = File(.socket(pair, 1))
            (pair.first, pair.second) = (x, y)
            put(x, at: a)
            put(y, at: b)
        case .regularFile(let s):
            put(File(.regular), at: s)
        case .write(let s, let n):
            write(s, bytes: n, fill: false)
        case .fill(let s):
            write(s, bytes: 0, fill: true)
        case .drain(let s):
            drain(s)
        case .close(let s):
            put(nil, at: s)
        case .dup(let from, let to):
            // The same open file again changes nothing (select and epoll watch it as before).
            guard from != to, let file = slots[from], slots[to] !== file else { return }
            put(file, at: to)
        case .watch(let id, let kind, let s, let n, let owner, let body):
            watch(id: id, kind: kind == .read ? .read : .write, slot: s, niceness: n, owner: owner, body: body)
        case .sleep(let id, let period, let n, let owner, let body):
            guard (1...Int(Int32.max)).contains(period) else { return note(TraceLine.error("r\(id)", kind: "invalid-period", depth: depth)) }
            guard (0...2).contains(n) else { return note(TraceLine.error("r\(id)", kind: "invalid-niceness", depth: depth)) }
            if let owner, let same = sleepers.first(where: { $0.owner == owner }) {
                handles[id] = same
                return
            }
            let r = Reg(id: id, kind: .sleep, slot: -1, niceness: n, owner: owner, body: body,
                        period: Int64(period), lastCall: clock)
            sleepers.insert(r, at: 0)
            handles[id] = r
            liveRegistrations += 1
            minTick = min(minTick, r.period)
        case .unregister(let id):
            if let r = handles[id] { unregister(r) }
        case .unregisterAll(let s):
            unregisterAll(s)
        case .closeAfterBatch(let s):
            unregisterAll(s)
            if dispatchDepth == 0 {
                put(nil, at: s)
            } else if !pendingCloses.contains(s) {
                pendingCloses.append(s)
            }
        case .job(let id, let n, let body):
            guard jobsSubmitted < scriptJobLimit else { return note(TraceLine.note("job j\(id) over the limit", depth: depth)) }
            guard completionsRunning == 0 else { return note(TraceLine.note("job j\(id) inside a completion", depth: depth)) }
            guard (0...2).contains(n) else { return note(TraceLine.error("job j\(id)", kind: "invalid-niceness", depth: depth)) }
            jobsSubmitted += 1
            pendingJobs += 1
            // The runner waits for the worker: the job is finished before the script goes on.
            if n == 0 { finishedUrgent.append(Job(id: id, niceness: n, body: body)) } else { finishedBackground.append(Job(id: id, niceness: n, body: body)) }
        case .quickPoll:
            quickPoll(niceness)
        case .stop:
            shutdownRequested = true
        case .clock(let d):
            clock += Int64(d)
        case .runOnce:
            onceCount += 1
            note(TraceLine.once(onceCount))
            now = clock
            poll(quick: false)
            note(TraceLine.counters(polls: polls, quickPolls: quickPolls, refused: refused, sleeps: sleepCalls,
                                    jobs: jobsCompleted, registrations: liveRegistrations, pendingJobs: pendingJobs))
        case .run:
            // run() takes the request before it would poll; without one it would never return.
            guard let reason = takeShutdown() else { return note("run skipped") }
            note("run -> \(reason)")
        case .takeShutdown:
            note("take -> \(takeShutdown() ?? "none")")
        case .signal(let signal, let count):
            note("signal \(signal.rawValue) \(count)")
            // The admin signals shut down, SIGPIPE and SIGIO are counted, SIGCHLD only wakes.
            switch signal {
            case .HUP, .INT, .TERM, .PWR: pendingSignals.insert(signal)
            case .PIPE: sawPipe = true
            case .IO: sawIO = true
            case .CHLD: break
            }
            perform(.runOnce, niceness: 0)
        case .signalCounts:
            perform(.runOnce, niceness: 0)
            note("signals pipe=\(sawPipe ? "yes" : "no") io=\(sawIO ? "yes" : "no")")
        case .child:
            // The library's children start with default dispositions and nothing blocked.
            note("child -> killed by TERM")
        case .secondLoop:
            note("secondloop ok")
        }
    }

    /// Admin signals first, lowest number first, then a stop.
    private func takeShutdown() -> String? {
        if let first = pendingSignals.min(by: { $0.number < $1.number }) {
            pendingSignals.remove(first)
            return first.rawValue
        }
        guard shutdownRequested else { return nil }
        shutdownRequested = false
        return "stopped"
    }

    /// How the script's own process ends once the loop is closed and the process
    /// unblocks every signal: an admin signal recorded and never consumed is handed
    /// back to the process, and the lowest-numbered pending one terminates it.
    private var ending: String {
        guard let first = pendingSignals.min(by: { $0.number < $1.number }) else { return "exit 0" }
        return "killed by \(first.rawValue)"
    }

    private func watch(id: Int, kind: Reg.Kind, slot: Int, niceness n: Int, owner: Int?, body: [Step]) {
        guard (0...2).contains(n) else { return note(TraceLine.error("r\(id)", kind: "invalid-niceness", depth: depth)) }
        // Registering sets the descriptor's flags: a closed number fails.
        guard slots[slot] != nil else { return note(TraceLine.error("r\(id)", kind: "system", depth: depth)) }
        let entry = entries[slot]
        if let owner, let entry, let same = (kind == .read ? entry.reads : entry.writes).first(where: { $0.owner == owner }) {
            // Registered again: it now watches whatever file the number names.
            handles[id] = same
            same.orphaned = false
            return
        }
        let e: Entry
        if let entry {
            e = entry
        } else {
            generations += 1
            e = Entry(generation: generations)
            entries[slot] = e
        }
        let r = Reg(id: id, kind: kind, slot: slot, niceness: n, owner: owner, body: body, period: 0, lastCall: 0)
        if kind == .read {
            if e.reads.isEmpty { readList.append(slot) }
            e.reads.insert(r, at: 0)
        } else {
            if e.writes.isEmpty { writeList.append(slot) }
            e.writes.insert(r, at: 0)
        }
        handles[id] = r
        liveRegistrations += 1
    }

    private func unregister(_ r: Reg) {
        guard r.active else { return }
        r.active = false
        liveRegistrations -= 1
        if r.kind == .sleep {
            sleepers.removeAll { $0 === r }
            minTick = sleepers.reduce(40) { min($0, $1.period) }
            return
        }
        guard let e = entries[r.slot] else { return }
        if r.kind == .read {
            e.reads.removeAll { $0 === r }
            if e.reads.isEmpty { Self.swapRemove(r.slot, from: &readList) }
        } else {
            e.writes.removeAll { $0 === r }
            if e.writes.isEmpty { Self.swapRemove(r.slot, from: &writeList) }
        }
        if e.isEmpty { entries[r.slot] = nil }
    }

    private static func swapRemove(_ slot: Int, from list: inout [Int]) {
        guard let i = list.firstIndex(of: slot) else { return }
        list[i] = list[list.count - 1]
        list.removeLast()
    }

    private func unregisterAll(_ slot: Int) {
        guard let e = entries[slot] else { return }
        for r in e.reads + e.writes { unregister(r) }
    }

    // MARK: doPoll

    /// `rearmed`: the number had a registration made since its file last changed.
    /// Without one, what a wait reports for it is a declared difference (orphan).
    private struct Ready { let slot: Int; let generation: Int; let readable: Bool; let writable: Bool; let rearmed: Bool }

    private func poll(quick: Bool) {
        polls += 1
        // What select reports: registered numbers whose file is ready for what they are watched for.
        var batch: [Int: Ready] = [:]
        for (slot, e) in entries {
            guard let file = slots[slot] else { continue }
            let (r, w) = readiness(file)
            let readable = r && !e.reads.isEmpty, writable = w && !e.writes.isEmpty
            let rearmed = (e.reads + e.writes).contains { !$0.orphaned }
            if readable || writable {
                batch[slot] = Ready(slot: slot, generation: e.generation, readable: readable, writable: writable, rearmed: rearmed)
            }
        }
        now = clock
        dispatchDepth += 1
        completions(urgentOnly: true)
        dispatch(batch, urgent: true)
        completions(urgentOnly: true)
        if !quick {
            dispatch(batch, urgent: false)
            completions(urgentOnly: false)
            now = clock
            // The port's scan rule (MIGRATION.md "Minimum tick"): every minTick, but
            // not before some callback is due; a clock gone back scans at once.
            let due: Bool
            switch rules.sleepScan {
            case .earliestDue:
                let earliestDue = sleepers.map { $0.lastCall + $0.period }.min() ?? Int64.max
                due = now >= max(lastSleepRun + minTick, earliestDue) || now < lastSleepRun
            case .everyMinTick:
                let elapsed = now - lastSleepRun
                due = elapsed < 0 || elapsed >= minTick
            }
            if due {
                runSleepers(urgentOnly: false)
                lastSleepRun = now
                completions(urgentOnly: false)
            }
        }
        dispatchDepth -= 1
        if dispatchDepth == 0 {
            let closes = pendingCloses
            pendingCloses = []
            for s in closes { put(nil, at: s) }
        }
    }

    private func dispatch(_ batch: [Int: Ready], urgent: Bool) {
        for kind in [Reg.Kind.read, .write] {
            switch rules.order {
            case .registrationList, .reversedList:
                var order = kind == .read ? readList : writeList
                if rules.order == .reversedList { order.reverse() }
                for slot in order { visit(slot, kind: kind, batch: batch, urgent: urgent) }
            case .liveList:
                var i = 0
                while i < (kind == .read ? readList : writeList).count {
                    let slot = (kind == .read ? readList : writeList)[i]
                    i += 1
                    visit(slot, kind: kind, batch: batch, urgent: urgent)
                }
            }
        }
    }

    /// Calls the chain of a ready fd, if it is ready for `kind` and has registrations for this pass.
    private func visit(_ slot: Int, kind: Reg.Kind, batch: [Int: Ready], urgent: Bool) {
        guard let ready = batch[slot], kind == .read ? ready.readable : ready.writable else { return }
        guard let e = entries[slot] else { return }
        if rules.staleEvents == .dropped && e.generation != ready.generation { return }
        let chain = kind == .read ? e.reads : e.writes
        guard let head = chain.first else { return }
        for r in chain where r.active {
            switch rules.passes {
            case .perRegistration:
                guard (r.niceness == 0) == urgent else { continue }
            case .byChainHead:
                guard (head.niceness == 0) == urgent else { continue }
                if urgent && r.niceness != 0 { continue }
            }
            let quickPollsBefore = quickPolls
            call(r, orphan: r.orphaned || !ready.rearmed)
            if rules.nestedQuickPoll == .chainCut && quickPolls != quickPollsBefore { return }
        }
    }

    private func call(_ r: Reg, orphan: Bool = false) {
        let saved = niceness
        niceness = min(r.niceness, 1)
        defer { niceness = saved }
        switch r.kind {
        case .sleep:
            sleepCalls += 1
            note(TraceLine.sleep(id: r.id, quick: inQuickPoll, niceness: niceness, depth: depth))
            run(r.body)
        case .read, .write:
            let pass = inQuickPoll ? "q" : (niceness == 0 ? "p1" : "p2")
            note(TraceLine.call(id: r.id, kind: r.watchKind, slot: r.slot, pass: pass, niceness: niceness, depth: depth, orphan: orphan))
            if !orphan { run(r.body) }
        }
    }

    private func run(_ body: [Step]) {
        depth += 1
        defer { depth -= 1 }
        for step in body where !step.isTopLevelOnly { perform(step, niceness: niceness) }
    }

    private func runSleepers(urgentOnly: Bool) {
        for r in sleepers where r.active && (!urgentOnly || r.niceness == 0) {
            if r.lastCall > now { r.lastCall = now }
            guard r.lastCall + r.period <= now else { continue }
            r.lastCall = now
            let quickPollsBefore = quickPolls
            call(r)
            if rules.nestedQuickPoll == .chainCut && quickPolls != quickPollsBefore { return }
        }
    }

    /// Finished jobs' completions, in batches of up to 16: the niceness-0 ones
    /// first, the others only when not urgent-only; a job finishing meanwhile
    /// (one a completion submitted) waits for the next batch.
    private func completions(urgentOnly: Bool) {
        while true {
            var batch = Array(finishedUrgent.prefix(16))
            finishedUrgent.removeFirst(batch.count)
            if !urgentOnly {
                let more = Array(finishedBackground.prefix(16 - batch.count))
                finishedBackground.removeFirst(more.count)
                batch += more
            }
            if batch.isEmpty { return }
            for job in batch {
                pendingJobs -= 1
                jobsCompleted += 1
                let saved = niceness
                niceness = min(job.niceness, 1)
                note(TraceLine.job(id: job.id, niceness: niceness, depth: depth))
                completionsRunning += 1
                run(job.body)
                completionsRunning -= 1
                niceness = saved
            }
        }
    }

    private func quickPoll(_ n: Int) {
        guard n > 0 else { return }
        guard !inQuickPoll else {
            refused += 1
            return note(TraceLine.note("quickpoll refused", depth: depth))
        }
        inQuickPoll = true
        quickPolls += 1
        let saved = niceness
        poll(quick: true)
        runSleepers(urgentOnly: true)
        niceness = saved
        inQuickPoll = false
        note(TraceLine.note("quickpoll ran", depth: depth))
    }
}
