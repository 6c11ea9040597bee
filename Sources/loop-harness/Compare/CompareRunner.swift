import CommandLineOptions
import Compat
import Glibc
import LoopTools
import Synchronization

/// `loop-harness compare`: a fixed set of scenarios run on both backends in
/// one process, one table, a stated tolerance per scenario. A divergence
/// beyond a tolerance fails the command.
struct CompareOptions: Sendable {
    /// Short runs (seconds in all) for smoke tests.
    var quick = false
    /// Multiplies every tolerance; 0 forces any divergence out of tolerance.
    var toleranceScale = 1.0
    var only: Set<String> = []
    var json = false
    /// Where scenarios leave their latency samples, for the histograms under the table.
    let distributions = DistributionRecorder()
}

/// Latency samples by backend and name, kept while the scenarios run.
final class DistributionRecorder: Sendable {
    private let samples = Mutex<[(backend: LoopBackendKind, name: String, values: [Double])]>([])

    func record(_ backend: LoopBackendKind, _ name: String, _ sample: Sample) {
        samples.withLock { $0.append((backend, name, sample.values)) }
    }

    /// Names in recording order, each with its epoll and legacy values.
    func pairs(named names: (String) -> Bool) -> [(name: String, epoll: [Double], legacy: [Double])] {
        samples.withLock { all in
            var order: [String] = []
            for s in all where names(s.name) && !order.contains(s.name) { order.append(s.name) }
            return order.map { name in
                (
                    name, all.first { $0.name == name && $0.backend == .epoll }?.values ?? [],
                    all.first { $0.name == name && $0.backend == .legacy }?.values ?? []
                )
            }
        }
    }
}

/// Measurements of one backend in one scenario, by metric name.
typealias Measurements = [(name: String, value: Double)]

struct Scenario: Sendable {
    let name: String
    let summary: String
    let tolerance: String
    let measure: @Sendable (LoopBackendKind, CompareOptions) throws -> Measurements
    /// Returns nil when within tolerance, else what diverged.
    let judge: @Sendable (_ epoll: [String: Double], _ legacy: [String: Double], _ scale: Double) -> String?
}

struct ScenarioReport {
    let scenario: Scenario
    let epoll: Measurements
    let legacy: Measurements
    let divergence: String?
}

var compareCommandOptions: CommandOptions {
    CommandOptions(
        command: "compare",
        summary: "The side-by-side scenarios on both backends in this process, one table. "
            + "Exits 1 when a scenario diverges beyond its tolerance.",
        options: [
            .flag("--quick", "short runs (seconds in all)"),
            .text(
                "--only", "LIST",
                expects: "comma-separated scenarios of " + allScenarios.map(\.name).joined(separator: ","),
                "run only these scenarios: " + allScenarios.map(\.name).joined(separator: ",")),
            .decimal(
                "--tolerance-scale", 0...1e6, default: 1, "multiplies every tolerance; 0 forces every divergence out"),
        ])
}

func runCompare(_ args: Arguments) throws -> Int32 {
    let parsed = try args.parse(compareCommandOptions)
    var options = CompareOptions()
    options.quick = parsed.flag("--quick")
    options.json = parsed.json
    options.toleranceScale = parsed.decimal("--tolerance-scale")
    let known = allScenarios.map(\.name)
    if let only = try parsed.converted(
        "--only",
        { text -> Set<String>? in
            let names = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            return names.allSatisfy(known.contains) ? Set(names) : nil
        })
    {
        options.only = only
    }
    let scenarios = allScenarios.filter { options.only.isEmpty || options.only.contains($0.name) }

    var reports: [ScenarioReport] = []
    for scenario in scenarios {
        if !options.json { sayError("compare: \(scenario.name) …") }
        let epoll = try scenario.measure(.epoll, options)
        let legacy = try scenario.measure(.legacy, options)
        let verdict = scenario.judge(
            Dictionary(epoll, uniquingKeysWith: { a, _ in a }),
            Dictionary(legacy, uniquingKeysWith: { a, _ in a }), options.toleranceScale)
        reports.append(ScenarioReport(scenario: scenario, epoll: epoll, legacy: legacy, divergence: verdict))
    }
    say(
        options.json
            ? compareJSON(reports).description : compareTable(reports) + compareHistograms(options.distributions))
    return reports.allSatisfy { $0.divergence == nil } ? 0 : 1
}

func compareTable(_ reports: [ScenarioReport]) -> String {
    var rows: [[String]] = [["scenario", "metric", "epoll", "legacy", "epoll/legacy"]]
    for r in reports {
        let legacy = Dictionary(r.legacy, uniquingKeysWith: { a, _ in a })
        for (i, m) in r.epoll.enumerated() {
            let l = legacy[m.name] ?? .nan
            let ratio = l != 0 ? m.value / l : .nan
            rows.append([i == 0 ? r.scenario.name : "", m.name, format(m.value), format(l), format(ratio)])
        }
    }
    let widths = (0..<5).map { c in rows.map { $0[c].count }.max() ?? 0 }
    func line(_ row: [String]) -> String {
        row.enumerated().map { c, cell in
            c < 2 ? cell.padded(to: widths[c]) : cell.leftPadded(to: widths[c])
        }.joined(separator: "  ")
    }
    var out = rows.map(line)
    out.insert(String(repeating: "-", count: out[0].count), at: 1)
    out.append("")
    for r in reports {
        let mark = r.divergence == nil ? "ok  " : "FAIL"
        out.append("\(mark) \(r.scenario.name): \(r.scenario.tolerance)" + (r.divergence.map { " — \($0)" } ?? ""))
    }
    let failed = reports.filter { $0.divergence != nil }.count
    out.append("\(reports.count - failed) passed, \(failed) failed")
    return out.joined(separator: "\n")
}

/// The distributions behind the percentiles, as small text histograms: shared
/// log-spaced bins, a bar per backend, so the two shapes can be compared at a glance.
func compareHistograms(_ recorder: DistributionRecorder) -> String {
    var out: [String] = []
    for (name, epoll, legacy) in recorder.pairs(named: { _ in true }) where !epoll.isEmpty || !legacy.isEmpty {
        out.append("")
        out.append(contentsOf: textHistogram(name, epoll: epoll, legacy: legacy))
    }
    return out.joined(separator: "\n")
}

func textHistogram(_ name: String, epoll: [Double], legacy: [Double], bins: Int = 8, width: Int = 24) -> [String] {
    let all = (epoll + legacy).filter { $0.isFinite && $0 > 0 }
    guard let low = all.min(), let high = all.max() else { return ["\(name): no samples"] }
    // Edges from low to high, evenly spaced on a log scale (one bin when all are equal).
    let count = high > low ? bins : 1
    let ratio = high > low ? pow(high / low, 1 / Double(count)) : 1
    let edges = (0...count).map { low * pow(ratio, Double($0)) }
    func counts(_ values: [Double]) -> [Int] {
        var c = [Int](repeating: 0, count: count)
        for v in values where v.isFinite && v > 0 {
            var i = 0
            while i < count - 1 && v > edges[i + 1] { i += 1 }
            c[i] += 1
        }
        return c
    }
    let e = counts(epoll)
    let l = counts(legacy)
    let most = max(e.max() ?? 0, l.max() ?? 0, 1)
    func bar(_ n: Int) -> String {
        let cells = Double(n) / Double(most) * Double(width)
        let whole = Int(cells)
        return String(repeating: "#", count: whole) + (cells - Double(whole) >= 0.5 ? "+" : "")
    }
    let labels = (0..<count).map { "\(format(edges[$0]))–\(format(edges[$0 + 1]))" }
    let labelWidth = max(labels.map(\.count).max() ?? 0, name.count)
    let column = width + 8
    var lines = [
        name.padded(to: labelWidth) + "  " + "epoll (\(epoll.count))".padded(to: column) + "legacy (\(legacy.count))"
    ]
    for i in 0..<count {
        let left = (bar(e[i]) + " " + String(e[i])).padded(to: column)
        lines.append(labels[i].padded(to: labelWidth) + "  " + left + bar(l[i]) + " " + String(l[i]))
    }
    return lines
}

func compareJSON(_ reports: [ScenarioReport]) -> JSON {
    .object([
        (
            "scenarios",
            .array(
                reports.map { r in
                    .object([
                        ("name", .string(r.scenario.name)),
                        ("summary", .string(r.scenario.summary)),
                        ("tolerance", .string(r.scenario.tolerance)),
                        ("ok", .bool(r.divergence == nil)),
                        ("divergence", r.divergence.map(JSON.string) ?? .null),
                        ("epoll", .object(r.epoll.map { ($0.name, .number($0.value)) })),
                        ("legacy", .object(r.legacy.map { ($0.name, .number($0.value)) })),
                    ])
                })
        ),
        ("ok", .bool(reports.allSatisfy { $0.divergence == nil })),
    ])
}
