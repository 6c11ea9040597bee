import Compat
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
    /// The original C++ node doing the same work, where it can (the `original` workload).
    var original: Cell? = nil
    /// Each repetition's figure per column, in the order they ran (NaN where one gave none):
    /// the spreads of the ratios.
    var runs: [Column: [Double]] = [:]

    var epollOverLegacy: Double? { ratio(epoll, legacy) }
    var epollOverPeer: Double? { peer.flatMap { ratio(epoll, $0) } }
    var epollOverOriginal: Double? { original.flatMap { ratio(epoll, $0) } }

    /// The spread over the repetitions of `a ÷ b` (nil with fewer than two).
    func spread(_ a: Column, over b: Column) -> Spread? {
        guard let x = runs[a], let y = runs[b], let s = Spread.ofRatios(x, y), s.runs >= 2 else { return nil }
        return s
    }

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
    enum Bound: Sendable, Equatable {
        case atLeast, atMost
        case within(Double, Double)
    }
    let bound: Bound
    let value: Double

    static func atLeast(_ v: Double) -> Goal { Goal(bound: .atLeast, value: v) }
    static func atMost(_ v: Double) -> Goal { Goal(bound: .atMost, value: v) }
    static func within(_ low: Double, _ high: Double) -> Goal { Goal(bound: .within(low, high), value: low) }

    func holds(_ r: Double) -> Bool {
        switch bound {
        case .atLeast: return r >= value
        case .atMost: return r <= value
        case .within(let low, let high): return r >= low && r <= high
        }
    }
    var text: String {
        switch bound {
        case .atLeast: return "≥ " + format(value, decimals: 2)
        case .atMost: return "≤ " + format(value, decimals: 2)
        case .within(let low, let high): return format(low, decimals: 2) + "–" + format(high, decimals: 2)
        }
    }
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
    /// The ratio's spread over the repetitions (nil: one run, or no figure).
    var spread: Spread? = nil
    /// Workloads besides the one that adds it whose figures it uses (their load counts too).
    var alsoUses: [String] = []
    /// The workload that added it (set by the report).
    var workload = ""
}

/// A curve per contender: a figure for each count of something registered.
struct Curve: Sendable {
    let name: String
    let title: String
    let x: String
    let y: String
    let counts: [Int]
    /// Contender → count → figure (or why there is none).
    let series: [String: [Int: Cell]]
    /// Contender → count → each timed run's figure, in the order they ran.
    var runs: [String: [Int: [Double]]] = [:]

    /// Contenders in a fixed order: the loops first, then the peers by name.
    var contenders: [String] {
        series.keys.sorted { a, b in
            let rank = { (s: String) in
                LoopBackendKind(rawValue: s).map { LoopBackendKind.allCases.firstIndex(of: $0)! } ?? 9
            }
            return rank(a) != rank(b) ? rank(a) < rank(b) : a < b
        }
    }
}

/// The percentiles a latency distribution is kept at (for the CDF pictures).
let cdfPercentiles: [Double] = (1...99).map(Double.init) + [99.5, 99.9]

/// `cdf_us=a,b,...`: `sample` at each of `cdfPercentiles`.
func cdfField(_ sample: Sample) -> String {
    "cdf_us=" + cdfPercentiles.map { format(sample.percentile($0), decimals: 1) }.joined(separator: ",")
}

/// The `cdf_us` lists of several runs merged: per percentile, the median of the runs.
func mergedCDF(_ results: [[String: String]]) -> [Double]? {
    let lists = results.compactMap { r in r["cdf_us"].map { $0.split(separator: ",").compactMap { Double($0) } } }
        .filter { $0.count == cdfPercentiles.count }
    guard !lists.isEmpty else { return nil }
    return cdfPercentiles.indices.map { i in median(lists.map { $0[i] }) }
}

/// Latency distributions of one case, per contender, at `cdfPercentiles`.
struct Distribution: Sendable {
    let name: String
    let title: String
    let series: [(String, [Double])]
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
    private(set) var curves: [Curve] = []
    private(set) var distributions: [Distribution] = []
    /// The machine's load over each workload, in the order they ran (item 3 of the run's honesty).
    private(set) var loads: [WorkloadLoad] = []
    /// The workload running now: the targets it adds rest on its load.
    var currentWorkload = ""
    /// Over the whole run, from its start to its last workload's end.
    private let started = CPUSnapshot.now()
    private(set) var wholeRun: WorkloadLoad?

    init(command: String, quick: Bool) {
        self.command = command
        self.quick = quick
    }

    func add(_ row: Row) { rows.append(row) }
    func add(_ target: TargetResult) {
        var target = target
        target.workload = currentWorkload
        targets.append(target)
    }
    func add(_ load: WorkloadLoad) {
        loads.removeAll { $0.workload == load.workload }
        loads.append(load)
        wholeRun = WorkloadLoad("the whole run", from: started, to: .now(), attempt: 1)
    }

    /// Whether a workload the target rests on ran while others used the machine.
    func busy(_ target: TargetResult) -> Bool {
        let names = [target.workload] + target.alsoUses
        return loads.contains { names.contains($0.workload) && $0.busy }
    }

    /// Whether any workload's figures were taken on a busy machine.
    var anyBusy: Bool { loads.contains(where: \.busy) }

    /// What has been added so far, to take back a workload's attempt that ran on a busy machine.
    struct Mark {
        fileprivate let counts: [Int]
    }
    var mark: Mark {
        Mark(counts: [rows.count, targets.count, peers.count, notes.count, curves.count, distributions.count])
    }
    /// What one attempt of a workload added, taken out of the report.
    struct Attempt {
        fileprivate let rows: [Row], targets: [TargetResult], peers: [(workload: String, peer: String)]
        fileprivate let notes: [String], curves: [Curve], distributions: [Distribution]
        let load: WorkloadLoad
    }

    /// Takes out what was added since `mark` (an attempt that ran on a busy machine), to be
    /// put back if the next attempt is busier still.
    func takeAttempt(since mark: Mark, load: WorkloadLoad) -> Attempt {
        defer {
            rows.removeLast(rows.count - mark.counts[0])
            targets.removeLast(targets.count - mark.counts[1])
            peers.removeLast(peers.count - mark.counts[2])
            notes.removeLast(notes.count - mark.counts[3])
            curves.removeLast(curves.count - mark.counts[4])
            distributions.removeLast(distributions.count - mark.counts[5])
        }
        return Attempt(
            rows: Array(rows[mark.counts[0]...]), targets: Array(targets[mark.counts[1]...]),
            peers: Array(peers[mark.counts[2]...]), notes: Array(notes[mark.counts[3]...]),
            curves: Array(curves[mark.counts[4]...]), distributions: Array(distributions[mark.counts[5]...]),
            load: load)
    }

    /// Puts an attempt back in place of what was added since `mark`, with its load.
    func restore(_ attempt: Attempt, since mark: Mark) {
        _ = takeAttempt(since: mark, load: attempt.load)
        rows += attempt.rows
        targets += attempt.targets
        peers += attempt.peers
        notes += attempt.notes
        curves += attempt.curves
        distributions += attempt.distributions
        add(attempt.load)
    }
    func add(_ curve: Curve) { curves.append(curve) }
    func add(_ distribution: Distribution) { distributions.append(distribution) }
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
