/// The semantics a migrated loop must have, as a plain model: no descriptors,
/// no syscalls, no clock but the script's. It predicts a script's trace from the
/// legacy loop's rules (../shared/reference, Loop.cpp) and the port's declared
/// differences (MIGRATION.md), each a named switch in `ModelRules`, so that a
/// declared difference is one rule and not a tolerance.
///
/// An independent oracle: it shares only the trace's spelling with the core.
/// Readiness comes from what the script did to its files, by the kernel's rules
/// for pipes, AF_UNIX stream sockets and regular files as select reports them.
///
/// The model's state and its steps are here; its poll (`doPoll`), dispatch, sleep callbacks,
/// completions and quickpoll are in ReferenceModel+Poll.swift, its files in ReferenceModel+Files.swift.
/// Members are internal, not private, so that the files share them; nothing outside the model touches them.
public final class ReferenceModel {
    /// The script's slots and the file each names (ReferenceModel+Files.swift: the files as the kernel keeps them).
    var slots = [File?](repeating: nil, count: scriptSlots.count)

    // MARK: The loop, as the legacy semantics and the declared differences have it

    final class Reg {
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
        enum Kind { case read, write, sleep, timer }
        /// Timers: registration order, which breaks ties between equal due times.
        var sequence = 0
        init(id: Int, kind: Kind, slot: Int, niceness: Int, owner: Int?, body: [Step], period: Int64, lastCall: Int64) {
            (self.id, self.kind, self.slot, self.niceness, self.owner, self.body) = (
                id, kind, slot, niceness, owner, body
            )
            (self.period, self.lastCall) = (period, lastCall)
        }
        var watchKind: WatchKind { kind == .read ? .read : .write }
    }

    /// The registrations of one fd; a new entry is a new generation.
    final class Entry {
        let generation: Int
        var reads: [Reg] = [] // head first
        var writes: [Reg] = []
        init(generation: Int) { self.generation = generation }
        var isEmpty: Bool { reads.isEmpty && writes.isEmpty }
    }

    struct Job {
        let id: Int
        let niceness: Int
        let body: [Step]
    }

    public let rules: ModelRules
    var entries: [Int: Entry] = [:]
    var generations = 0
    /// The original's `s_readFds` / `s_writeFds`.
    var readList: [Int] = []
    var writeList: [Int] = []
    var sleepers: [Reg] = [] // newest first
    var timers: [Reg] = [] // pending one-shot timers, oldest first
    var timerSequence = 0
    var handles: [Int: Reg] = [:]
    var liveRegistrations = 0
    var minTick: Int64 = 40
    var lastSleepRun: Int64
    var clock: Int64
    var now: Int64
    var inQuickPoll = false
    var niceness = 0
    var dispatchDepth = 0
    var pendingCloses: [Int] = []
    var finishedUrgent: [Job] = []
    var finishedBackground: [Job] = []
    var pendingJobs = 0
    var jobsSubmitted = 0
    var completionsRunning = 0
    var shutdownRequested = false
    /// Admin signals received and not consumed.
    var pendingSignals: Set<ProcessSignal> = []
    var sawPipe = false, sawIO = false
    var polls = 0, quickPolls = 0, refused = 0, sleepCalls = 0, jobsCompleted = 0
    var onceCount = 0
    var depth = 0
    var trace = Trace()

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

    func note(_ line: String) { trace.lines.append(line) }

    func orphanRegistrations(of slot: Int) {
        guard let entry = entries[slot] else { return }
        for r in entry.reads + entry.writes { r.orphaned = true }
    }

    func perform(_ step: Step, niceness: Int) {
        switch step {
        case .pipe(let r, let w):
            let p = Pipe()
            let reader = File(.pipeRead(p))
            let writer = File(.pipeWrite(p))
            (p.reader, p.writer) = (reader, writer)
            put(reader, at: r)
            put(writer, at: w)
        case .socketPair(let a, let b):
            let pair = SocketPair()
            let x = File(.socket(pair, 0))
            let y = File(.socket(pair, 1))
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
            guard (1...Int(Int32.max)).contains(period) else {
                return note(TraceLine.error("r\(id)", kind: "invalid-period", depth: depth))
            }
            guard (0...2).contains(n) else {
                return note(TraceLine.error("r\(id)", kind: "invalid-niceness", depth: depth))
            }
            if let owner, let same = sleepers.first(where: { $0.owner == owner }) {
                handles[id] = same
                return
            }
            let r = Reg(
                id: id, kind: .sleep, slot: -1, niceness: n, owner: owner, body: body,
                period: Int64(period), lastCall: clock)
            sleepers.insert(r, at: 0)
            handles[id] = r
            liveRegistrations += 1
            minTick = min(minTick, r.period)
        case .after(let id, let ms, let n, let owner, let body):
            guard (0...Int(Int32.max)).contains(ms) else {
                return note(TraceLine.error("r\(id)", kind: "invalid-period", depth: depth))
            }
            guard (0...2).contains(n) else {
                return note(TraceLine.error("r\(id)", kind: "invalid-niceness", depth: depth))
            }
            if let owner, let same = timers.first(where: { $0.owner == owner }) {
                handles[id] = same
                return
            }
            let r = Reg(
                id: id, kind: .timer, slot: -1, niceness: n, owner: owner, body: body,
                period: Int64(ms), lastCall: clock)
            timerSequence += 1
            r.sequence = timerSequence
            timers.append(r)
            handles[id] = r
            liveRegistrations += 1
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
            guard jobsSubmitted < scriptJobLimit else {
                return note(TraceLine.note("job j\(id) over the limit", depth: depth))
            }
            guard completionsRunning == 0 else {
                return note(TraceLine.note("job j\(id) inside a completion", depth: depth))
            }
            guard (0...2).contains(n) else {
                return note(TraceLine.error("job j\(id)", kind: "invalid-niceness", depth: depth))
            }
            jobsSubmitted += 1
            pendingJobs += 1
            // The runner waits for the worker: the job is finished before the script goes on.
            if n == 0 {
                finishedUrgent.append(Job(id: id, niceness: n, body: body))
            } else {
                finishedBackground.append(Job(id: id, niceness: n, body: body))
            }
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
            note(
                TraceLine.counters(
                    polls: polls, quickPolls: quickPolls, refused: refused, sleeps: sleepCalls,
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
    func takeShutdown() -> String? {
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
    var ending: String {
        guard let first = pendingSignals.min(by: { $0.number < $1.number }) else { return "exit 0" }
        return "killed by \(first.rawValue)"
    }

    func watch(id: Int, kind: Reg.Kind, slot: Int, niceness n: Int, owner: Int?, body: [Step]) {
        guard (0...2).contains(n) else {
            return note(TraceLine.error("r\(id)", kind: "invalid-niceness", depth: depth))
        }
        // Registering sets the descriptor's flags: a closed number fails.
        guard slots[slot] != nil else { return note(TraceLine.error("r\(id)", kind: "system", depth: depth)) }
        let entry = entries[slot]
        if let owner, let entry,
            let same = (kind == .read ? entry.reads : entry.writes).first(where: { $0.owner == owner })
        {
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

    func unregister(_ r: Reg) {
        guard r.active else { return }
        r.active = false
        liveRegistrations -= 1
        if r.kind == .timer {
            timers.removeAll { $0 === r }
            return
        }
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

    static func swapRemove(_ slot: Int, from list: inout [Int]) {
        guard let i = list.firstIndex(of: slot) else { return }
        list[i] = list[list.count - 1]
        list.removeLast()
    }

    func unregisterAll(_ slot: Int) {
        guard let e = entries[slot] else { return }
        for r in e.reads + e.writes { unregister(r) }
    }
}
