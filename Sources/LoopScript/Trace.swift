import LoopCore

/// What a script did, line by line: for every `once`, the callbacks in the
/// order they ran, then the counters that must match; for steps that can fail,
/// their outcome. The runner writes it from what the loop does, the model from
/// what the legacy semantics predict; the differ compares them.
public struct Trace: Equatable, Sendable, CustomStringConvertible {
    public var lines: [String] = []

    public init(lines: [String] = []) { self.lines = lines }

    public var description: String { lines.joined(separator: "\n") }

    /// Without the lines of a declared difference: callbacks of registrations whose
    /// number was closed or given another file since they were made (`orphan`).
    public var hasOrphanCalls: Bool { lines.contains { $0.contains(TraceLine.orphanMark) } }

    public var normalized: Trace { Trace(lines: lines.filter { !$0.contains(TraceLine.orphanMark) }) }
}

/// The one spelling of each trace line, shared by the runner and the model so
/// that they differ only where behaviour does.
public enum TraceLine {
    static let orphanMark = "orphan "

    /// A read/write callback. `pass` is `p1`, `p2` or `q` (inside a quickpoll).
    static func call(id: Int, kind: WatchKind, slot: Int, pass: String, niceness: Int, depth: Int, orphan: Bool)
        -> String
    {
        indent(depth) + (orphan ? orphanMark : "") + "r\(id) \(kind.rawValue) s\(slot) \(pass) n\(niceness)"
    }

    static func sleep(id: Int, quick: Bool, niceness: Int, depth: Int) -> String {
        indent(depth) + "r\(id) sleep \(quick ? "q" : "s") n\(niceness)"
    }

    /// A one-shot timer's call (always in a full poll).
    static func timer(id: Int, niceness: Int, depth: Int) -> String {
        indent(depth) + "r\(id) timer n\(niceness)"
    }

    static func job(id: Int, niceness: Int, depth: Int) -> String {
        indent(depth) + "j\(id) done n\(niceness)"
    }

    static func once(_ index: Int) -> String { "once \(index)" }

    /// A shutdown request by name: `stopped`, or the signal's (`PWR` for power).
    static func reason(_ r: ShutdownReason?) -> String {
        switch r {
        case nil: return "none"
        case .stopped: return "stopped"
        case .power: return "PWR"
        case .signal(let s): return ProcessSignal(number: s)?.rawValue ?? "signal \(s)"
        }
    }

    /// How a child process or the script's own process ended.
    public static func ending(_ status: Int32) -> String {
        let sig = status & 0x7f
        if sig == 0 { return "exit \((status >> 8) & 0xff)" }
        return "killed by " + (ProcessSignal(number: sig)?.rawValue ?? "signal \(sig)")
    }

    static func counters(
        polls: Int, quickPolls: Int, refused: Int, sleeps: Int, jobs: Int, registrations: Int, pendingJobs: Int
    ) -> String {
        "  = polls=\(polls) quickpolls=\(quickPolls) refused=\(refused) sleeps=\(sleeps) jobs=\(jobs) regs=\(registrations) pending=\(pendingJobs)"
    }

    static func note(_ text: String, depth: Int) -> String { indent(depth) + text }

    static func error(_ what: String, kind: String, depth: Int) -> String {
        indent(depth) + "\(what) error \(kind)"
    }

    /// Errors by kind only: messages carry descriptor numbers and errno text.
    static func errorKind(_ error: LoopError) -> String {
        switch error {
        case .invalidDescriptor: "invalid-descriptor"
        case .descriptorOutOfRange: "out-of-range"
        case .wrongThread: "wrong-thread"
        case .noEmptySlots: "no-empty-slots"
        case .invalidPeriod: "invalid-period"
        case .invalidNiceness: "invalid-niceness"
        case .invalidConfiguration: "invalid-configuration"
        case .forkedChild: "forked-child"
        case .legacyTimerSignalsUnrouted: "unrouted"
        case .legacyLoopAlreadyActive: "already-active"
        case .notAChild: "not-a-child"
        case .childAlreadyWatched: "already-watched"
        case .closed: "closed"
        case .system: "system"
        }
    }

    private static func indent(_ depth: Int) -> String { String(repeating: "  ", count: depth + 1) }
}
