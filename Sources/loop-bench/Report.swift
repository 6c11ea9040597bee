import LoopTools

/// One measured number per backend and peer, or why there is none.
enum Cell: Sendable {
    case value(Double)
    /// No number, and the reason the table shows instead (refused, pending, failed).
    case missing(String)

    var number: Double? {
        if case .value(let v) = self, v.isFinite { return v }
        return nil
    }
}

/// A line of the table: one metric of one case of a workload.
struct Row: Sendable {
    let workload: String
    /// The case within the workload, such as `window 32` or `N=1000`.
    let label: String
    /// Human name with unit (`RTT/s`, `p50 µs`) and the JSON key.
    let metric: String
    let key: String
    var epoll: Cell
    var legacy: Cell
    /// nil when the workload has no peer.
    var peer: Cell?
    let decimals: Int

    var epollOverLegacy: Double? { ratio(epoll, legacy) }
    var epollOverPeer: Double? { peer.flatMap { ratio(epoll, $0) } }

    /// nil when either is missing or the divisor shows as zero (an error of
    /// 0.00 ms has no meaningful ratio).
    private func ratio(_ a: Cell, _ b: Cell) -> Double? {
        guard let x = a.number, let y = b.number else { return nil }
        var shown = 0.5
        for _ in 0..<decimals { shown /= 10 }
        return abs(y) < shown ? nil : x / y
    }
}

/// A pass mark for a ratio.
struct Goal: Sendable {
    enum Bound: Sendable { case atLeast, atMost }
    let bound: Bound
    let value: Double

    static func atLeast(_ v: Double) -> Goal { Goal(bound: .atLeast, value: v) }
    static func atMost(_ v: Double) -> Goal { Goal(bound: .atMost, value: v) }

    func holds(_ r: Double) -> Bool { bound == .atLeast ? r >= value : r <= value }
    var text: String { (bound == .atLeast ? "≥ " : "≤ ") + format(value, decimals: 2) }
}

/// One of the targets, evaluated on this run's numbers.
struct TargetResult: Sendable {
    let name: String
    /// What the ratio divides by what.
    let formula: String
    let ratio: Double?
    let goal: Goal
    /// Why there is no ratio, when there is none.
    let note: String?

    var met: Bool? { ratio.map(goal.holds) }
    var verdict: String {
        guard let met else { return note.map { "n/a: \($0)" } ?? "n/a" }
        return met ? "met" : "MISSED"
    }
}

/// Everything one `loop-bench run` measured.
final class Report {
    let date = utcTimestamp()
    let machine = Machine.current
    let revision = sourceRevision()
    let command: String
    let quick: Bool
    private(set) var rows: [Row] = []
    private(set) var targets: [TargetResult] = []
    /// Peer name per workload, for the headings.
    private(set) var peers: [(workload: String, peer: String)] = []
    private(set) var notes: [String] = []

    init(command: String, quick: Bool) {
        self.command = command
        self.quick = quick
    }

    func add(_ row: Row) { rows.append(row) }
    func add(_ target: TargetResult) { targets.append(target) }
    func note(_ text: String) { notes.append(text) }
    func peer(_ name: String, for workload: String) { peers.append((workload, name)) }

    func row(_ workload: String, _ label: String, _ key: String) -> Row? {
        rows.first { $0.workload == workload && $0.label == label && $0.key == key }
    }
}

/// The median of `values` (nearest rank, as LoopTools' `Sample`).
func median(_ values: [Double]) -> Double {
    var sample = Sample()
    for v in values { sample.add(v) }
    return sample.percentile(50)
}

/// a ÷ b when both exist and b is positive.
func quotient(_ a: Double?, _ b: Double?) -> Double? {
    guard let a, let b, b > 0, a.isFinite, b.isFinite else { return nil }
    return a / b
}

/// `value` with a fixed number of decimals (the standard library has no printf for Double).
func format(_ value: Double, decimals: Int) -> String {
    guard value.isFinite else { return "n/a" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let scaled = (abs(value) * scale).rounded()
    let whole = Int(scaled / scale)
    let fraction = Int(scaled - Double(whole) * scale)
    var text = String(whole)
    if decimals > 0 {
        let digits = String(fraction)
        text += "." + String(repeating: "0", count: decimals - digits.count) + digits
    }
    return (value < 0 && scaled != 0 ? "-" : "") + text
}

extension Cell {
    func text(decimals: Int) -> String {
        switch self {
        case .value(let v): return format(v, decimals: decimals)
        case .missing(let why): return why
        }
    }
}
