import Glibc

/// A loop program: what a differential run does to a loop, step by step. A
/// value type that prints as text and parses back (`Script(parsing:)`), so a
/// failing program is a reproducible artefact.
///
/// Descriptors are named by *slot* (`s0`…`s15`): the runner places slot `k` at
/// a fixed descriptor number (base + k), so a script decides which numbers are
/// reused, dup'd onto and closed, and dispatch order is the same in every run.
/// Registrations, sleep callbacks and jobs are named by id (`r3`, `j1`); a
/// callback's body is a list of steps run each time it is called.
public struct Script: Equatable, Sendable, CustomStringConvertible {
    public var steps: [Step]

    public init(_ steps: [Step]) { self.steps = steps }

    public var description: String { steps.map(\.description).joined(separator: "\n") }

    /// Top-level steps plus every step inside a body: the size the shrinker reduces.
    public var size: Int { steps.reduce(0) { $0 + $1.size } }
}

/// The slots a script may use.
public let scriptSlots = 0..<16

/// Jobs one script run may submit; later `job` steps are skipped (and traced so).
/// A completion runs inside the loop's time-budgeted clean-up, whose budget is
/// wall time; up to 16 finished jobs are always taken in one go, so below this
/// limit which poll completes a job does not depend on the machine's speed.
/// For the same reason a `job` step while a completion runs (at any depth) is
/// skipped: a job finishing inside the clean-up would extend it past its budget.
public let scriptJobLimit = 16

/// Writes one socket end may have queued at its peer (until the peer drains);
/// later ones are skipped. An AF_UNIX socket stops being writable when its
/// queued buffers' kernel accounting passes a quarter of the send buffer, which
/// the script language does not model; four writes of at most 4096 bytes stay
/// well below it. A pipe's capacity (16 pages) is modelled exactly.
public let socketWriteLimit = 4

public enum WatchKind: String, Sendable, Equatable { case read, write }

/// The signals a process-level script may send itself: the admin signals the loop
/// turns into shutdowns, the ones it only counts, and SIGCHLD.
public enum ProcessSignal: String, Sendable, Equatable, CaseIterable {
    case HUP, INT, TERM, PWR, PIPE, IO, CHLD

    public var number: Int32 {
        switch self {
        case .HUP: SIGHUP
        case .INT: SIGINT
        case .TERM: SIGTERM
        case .PWR: SIGPWR
        case .PIPE: SIGPIPE
        case .IO: SIGIO
        case .CHLD: SIGCHLD
        }
    }

    public init?(number: Int32) {
        guard let s = Self.allCases.first(where: { $0.number == number }) else { return nil }
        self = s
    }
}

extension Script {
    /// Whether the script needs a process of its own.
    public var isProcessLevel: Bool { steps.contains { $0.isProcessLevel } }
}

public indirect enum Step: Equatable, Sendable, CustomStringConvertible {
    // Files. Creating into an occupied slot replaces (closes) what was there: a number reused.
    case pipe(read: Int, write: Int)
    case socketPair(Int, Int)
    case regularFile(Int)
    /// 1…4096 bytes (at most PIPE_BUF: a pipe takes all of it or none).
    case write(slot: Int, bytes: Int)
    /// Writes until the kernel refuses (EAGAIN): not writable any more.
    case fill(Int)
    /// Reads until nothing is left (EAGAIN or end of file).
    case drain(Int)
    /// Closes the number without telling the loop.
    case close(Int)
    /// `dup2(from, to)`: `to` names `from`'s file, whatever it named before.
    case dup(from: Int, to: Int)

    // The loop.
    case watch(id: Int, kind: WatchKind, slot: Int, niceness: Int, owner: Int?, body: [Step])
    case sleep(id: Int, periodMs: Int, niceness: Int, owner: Int?, body: [Step])
    /// A one-shot timer (`after(ms:)`): `body` runs once, in the first full poll at or after its time.
    case after(id: Int, ms: Int, niceness: Int, owner: Int?, body: [Step])
    case unregister(id: Int)
    case unregisterAll(slot: Int)
    case closeAfterBatch(slot: Int)
    /// A worker job; its completion runs `body` on the loop thread.
    case job(id: Int, niceness: Int, body: [Step])
    /// Inside a callback: `quickPoll(niceness:)` with the callback's niceness.
    case quickPoll
    case stop
    /// Top level only: the manual clock steps forward (or back, negative).
    case clock(Int)
    /// Top level only: one `runOnce()`.
    case runOnce
    /// Top level only: `run()`, when a shutdown request is pending (otherwise it would never return).
    case run
    /// Top level only: `takeShutdownRequest()`.
    case takeShutdown

    // Process-level: only in a process of the script's own (`loop-probe fuzz-process`).
    /// `count` process-directed signals (kill to the process), then one poll to notice them:
    /// legacy's handlers see a signal when it arrives, epoll's signalfd at its next wait.
    case signal(ProcessSignal, count: Int)
    /// One `once`, then whether SIGPIPE and SIGIO were counted so far.
    case signalCounts
    /// A child process through `ChildProcesses.system` that sends itself SIGTERM:
    /// it must start with default dispositions and nothing blocked, and die of it.
    case child
    /// A second loop (epoll) in the same thread: made, polled once, closed.
    case secondLoop

    public var size: Int {
        switch self {
        case .watch(_, _, _, _, _, let body), .sleep(_, _, _, _, let body), .after(_, _, _, _, let body),
            .job(_, _, let body):
            1 + body.reduce(0) { $0 + $1.size }
        default: 1
        }
    }

    /// Steps that only make sense outside callbacks.
    public var isTopLevelOnly: Bool {
        switch self {
        case .clock, .runOnce, .run, .takeShutdown, .signal, .signalCounts, .child, .secondLoop: true
        default: false
        }
    }

    /// Steps that change the process (signals, children, other loops): run in a process of their own.
    public var isProcessLevel: Bool {
        switch self {
        case .signal, .signalCounts, .child, .secondLoop: true
        default: false
        }
    }

    public var description: String {
        func body(_ steps: [Step]) -> String {
            steps.isEmpty ? "{}" : "{ " + steps.map(\.description).joined(separator: "; ") + " }"
        }
        func owner(_ o: Int?) -> String { o.map { " o\($0)" } ?? "" }
        switch self {
        case .pipe(let r, let w): return "pipe s\(r) s\(w)"
        case .socketPair(let a, let b): return "socketpair s\(a) s\(b)"
        case .regularFile(let s): return "file s\(s)"
        case .write(let s, let n): return "write s\(s) \(n)"
        case .fill(let s): return "fill s\(s)"
        case .drain(let s): return "drain s\(s)"
        case .close(let s): return "close s\(s)"
        case .dup(let from, let to): return "dup s\(from) s\(to)"
        case .watch(let id, let kind, let s, let n, let o, let b):
            return "on\(kind.rawValue) r\(id) s\(s) n\(n)\(owner(o)) \(body(b))"
        case .sleep(let id, let p, let n, let o, let b): return "sleep r\(id) \(p) n\(n)\(owner(o)) \(body(b))"
        case .after(let id, let ms, let n, let o, let b): return "after r\(id) \(ms) n\(n)\(owner(o)) \(body(b))"
        case .unregister(let id): return "unreg r\(id)"
        case .unregisterAll(let s): return "unregall s\(s)"
        case .closeAfterBatch(let s): return "closeafter s\(s)"
        case .job(let id, let n, let b): return "job j\(id) n\(n) \(body(b))"
        case .quickPoll: return "quickpoll"
        case .stop: return "stop"
        case .clock(let d): return d >= 0 ? "clock +\(d)" : "clock \(d)"
        case .runOnce: return "once"
        case .run: return "run"
        case .takeShutdown: return "take"
        case .signal(let s, let n): return "signal \(s.rawValue) \(n)"
        case .signalCounts: return "signals"
        case .child: return "child"
        case .secondLoop: return "secondloop"
        }
    }
}
