import Compat
import Glibc
import LoopTools

/// The three renderings of a report: the console table, markdown for
/// docs/BENCHMARKS.md, and JSON for tools.
extension Report {
    private static let headers = [
        "workload", "case", "metric", "epoll", "legacy", "peer", "original", "epoll/legacy", "epoll/peer",
        "epoll/original",
    ]

    private func cells(_ row: Row) -> [String] {
        /// A ratio, and its spread over the repetitions where there are several.
        func ratio(_ r: Double?, _ spread: Spread?) -> String {
            guard let r else { return "—" }
            return format(r, decimals: 2) + (spread.map { " (\($0.text))" } ?? "")
        }
        return [
            row.workload, row.label, row.metric,
            row.epoll.text(decimals: row.decimals), row.legacy.text(decimals: row.decimals),
            row.peer?.text(decimals: row.decimals) ?? "—", row.original?.text(decimals: row.decimals) ?? "—",
            ratio(row.epollOverLegacy, row.spread(.epoll, over: .legacy)),
            ratio(row.epollOverPeer, row.spread(.epoll, over: .peer)),
            ratio(row.epollOverOriginal, row.spread(.epoll, over: .original)),
        ]
    }

    private var heading: String {
        "\(date) on nproc \(machine.cpus), \(machine.model) (/proc/cpuinfo), \(machine.kernel)"
            + (canPin ? ", clients and servers pinned with taskset" : ", unpinned")
            + (quick ? ", QUICK (smoke test, numbers meaningless)" : "")
            + ", " + loadSummary
    }

    /// Other processes' CPU over the run, and BUSY when any workload's figures were taken while
    /// they used more than `WorkloadLoad.busyPercent` of a CPU.
    var loadSummary: String {
        guard let whole = wholeRun else { return "machine load not measured" }
        let busyOnes = loads.filter(\.busy).map(\.workload)
        return "other processes used \(format(whole.othersPercent, decimals: 1)) % of a CPU over the run"
            + (busyOnes.isEmpty
                ? " (quiet)"
                : "; BUSY machine during \(busyOnes.joined(separator: ", ")) (over "
                    + "\(format(WorkloadLoad.busyPercent, decimals: 0)) % of a CPU): their verdicts are not decided")
    }

    private var targetLines: [[String]] {
        targets.map {
            [
                $0.name, $0.formula, $0.ratio.map { format($0, decimals: 2) } ?? "—",
                $0.spread.flatMap { $0.runs >= 2 ? "\($0.text) (\($0.runs) runs)" : nil }
                    ?? ($0.ratio == nil ? "—" : "1 run"),
                $0.goal.text, $0.verdict(busy: busy($0)).text,
            ]
        }
    }

    private var loadLines: [[String]] {
        loads.map {
            [
                $0.workload, format($0.seconds, decimals: 1), format($0.othersPercent, decimals: 1),
                format($0.ownPercent, decimals: 1), String($0.attempt), $0.busy ? "BUSY" : "quiet",
            ]
        }
    }
    private static let loadHeaders = ["workload", "s", "others' CPU %", "this run's CPU %", "attempt", "machine"]

    // MARK: Console

    var text: String {
        var out = "loop-bench: \(heading), source \(revision)\n\n"
        var previous = ""
        let lines = rows.map { row -> [String] in
            var c = cells(row)
            if row.workload == previous { c[0] = "" }
            previous = row.workload
            return c
        }
        out += columns([Self.headers] + lines, rightAligned: 3...9)
        if !peers.isEmpty {
            out += "\npeers: " + peers.map { "\($0.workload): \($0.peer)" }.joined(separator: "; ") + "\n"
        }
        for curve in curves {
            out += "\n\(curve.title) (\(curve.y))\n" + columns(curveTable(curve), rightAligned: 1...9)
        }
        out += "\ntargets (a figure whose spread over the repetitions exceeds its margin to the goal is not decided)\n"
        out += columns(
            [["target", "ratio of", "ratio", "spread", "goal", "result"]] + targetLines, rightAligned: 2...4)
        out += "\nmachine load per workload (/proc/stat less this run's processes)\n"
        out += columns([Self.loadHeaders] + loadLines, rightAligned: 1...4)
        for n in notes { out += "note: \(n)\n" }
        return out
    }

    private func columns(_ table: [[String]], rightAligned: ClosedRange<Int>) -> String {
        var widths = [Int](repeating: 0, count: table.map(\.count).max() ?? 0)
        for line in table { for (i, cell) in line.enumerated() { widths[i] = max(widths[i], cell.count) } }
        var out = ""
        for line in table {
            let padded = line.enumerated().map { i, cell in
                let pad = String(repeating: " ", count: widths[i] - cell.count)
                return rightAligned.contains(i) ? pad + cell : cell + pad
            }
            var line = padded.joined(separator: "  ")
            while line.last == " " { line.removeLast() }
            out += line + "\n"
        }
        return out
    }

    /// A curve as a table: a line per count, a column per contender.
    private func curveTable(_ curve: Curve) -> [[String]] {
        let names = curve.contenders
        var table = [[curve.x] + names]
        for n in curve.counts {
            table.append(
                [String(n)] + names.map { curve.series[$0]?[n]?.text(decimals: curve.y.contains("%") ? 3 : 0) ?? "—" })
        }
        return table
    }

    // MARK: Markdown

    var markdown: String {
        var out = "Measured \(heading).\n\nCommand: `\(command)` (source \(revision))\n\n"
        out += "| " + Self.headers.joined(separator: " | ") + " |\n"
        out += "| --- | --- | --- |" + String(repeating: " ---: |", count: Self.headers.count - 3) + "\n"
        for row in rows { out += "| " + cells(row).joined(separator: " | ") + " |\n" }
        if !peers.isEmpty {
            out += "\nPeers: " + peers.map { "\($0.workload): \($0.peer)" }.joined(separator: "; ") + ".\n"
        }
        for curve in curves {
            let table = curveTable(curve)
            out += "\n\(curve.title), \(curve.y):\n\n| " + table[0].joined(separator: " | ") + " |\n"
            out += "| --- |" + String(repeating: " ---: |", count: table[0].count - 1) + "\n"
            for line in table.dropFirst() { out += "| " + line.joined(separator: " | ") + " |\n" }
        }
        out += "\n| target | ratio of | ratio | spread | goal | result |\n| --- | --- | ---: | ---: | ---: | --- |\n"
        for line in targetLines { out += "| " + line.joined(separator: " | ") + " |\n" }
        out +=
            "\nThe machine's load while each workload ran (other processes' CPU from /proc/stat, less this run's):\n\n"
        out += "| " + Self.loadHeaders.joined(separator: " | ") + " |\n| --- | ---: | ---: | ---: | ---: | --- |\n"
        for line in loadLines { out += "| " + line.joined(separator: " | ") + " |\n" }
        if !notes.isEmpty { out += "\n" + notes.map { "- \($0)\n" }.joined() }
        return out
    }

    // MARK: JSON

    var json: String {
        func cell(_ c: Cell?) -> JSON {
            switch c {
            case .value(let v)?: return .number(v)
            case .missing(let why)?: return .object([("missing", .string(why))])
            case nil: return .null
            }
        }
        let rowObjects = rows.map { r in
            JSON.object([
                ("workload", .string(r.workload)), ("case", .string(r.label)), ("metric", .string(r.key)),
                ("label", .string(r.metric)), ("epoll", cell(r.epoll)), ("legacy", cell(r.legacy)),
                ("peer", cell(r.peer)), ("original", cell(r.original)),
                ("epollOverLegacy", r.epollOverLegacy.map(JSON.number) ?? .null),
                ("epollOverPeer", r.epollOverPeer.map(JSON.number) ?? .null),
                ("epollOverOriginal", r.epollOverOriginal.map(JSON.number) ?? .null),
                (
                    "runs",
                    .object(
                        r.runs.keys.sorted { $0.rawValue < $1.rawValue }.map { column in
                            (column.rawValue, JSON.array(r.runs[column]!.map { $0.isFinite ? .number($0) : .null }))
                        })
                ),
            ])
        }
        func spread(_ s: Spread?) -> JSON {
            s.map { .object([("min", .number($0.low)), ("max", .number($0.high)), ("runs", .int($0.runs))]) } ?? .null
        }
        let targetObjects = targets.map { t in
            JSON.object([
                ("target", .string(t.name)), ("ratioOf", .string(t.formula)),
                ("ratio", t.ratio.map(JSON.number) ?? .null), ("goal", .string(t.goal.text)),
                ("spread", spread(t.spread)), ("busy", .bool(busy(t))),
                ("verdict", .string(t.verdict(busy: busy(t)).text)),
                ("met", t.verdict(busy: busy(t)).met.map(JSON.bool) ?? .null),
                ("note", t.note.map(JSON.string) ?? .null),
            ])
        }
        let loadObjects = loads.map { l in
            JSON.object([
                ("workload", .string(l.workload)), ("seconds", .number(l.seconds)),
                ("othersCpuPct", .number(l.othersPercent)), ("ownCpuPct", .number(l.ownPercent)),
                ("attempt", .int(l.attempt)), ("busy", .bool(l.busy)),
            ])
        }
        return JSON.object([
            ("date", .string(date)),
            (
                "machine",
                .object([
                    ("cpus", .int(machine.cpus)), ("model", .string(machine.model)),
                    ("kernel", .string(machine.kernel)),
                ])
            ),
            ("command", .string(command)), ("revision", .string(revision)), ("quick", .bool(quick)),
            ("pinned", .bool(canPin)),
            ("peers", .object(peers.map { ($0.workload, JSON.string($0.peer)) })),
            (
                "load",
                .object([
                    ("othersCpuPct", wholeRun.map { .number($0.othersPercent) } ?? .null),
                    ("busyAbovePct", .number(WorkloadLoad.busyPercent)), ("busy", .bool(anyBusy)),
                    ("summary", .string(loadSummary)), ("workloads", .array(loadObjects)),
                ])
            ),
            ("rows", .array(rowObjects)), ("targets", .array(targetObjects)),
            ("notes", .array(notes.map(JSON.string))),
            ("cdfPercentiles", .array(cdfPercentiles.map(JSON.number))),
            (
                "distributions",
                .array(
                    distributions.map { d in
                        JSON.object([
                            ("name", .string(d.name)), ("title", .string(d.title)),
                            ("series", .object(d.series.map { ($0.0, JSON.array($0.1.map(JSON.number))) })),
                        ])
                    })
            ),
            (
                "curves",
                .array(
                    curves.map { c in
                        JSON.object([
                            ("name", .string(c.name)), ("title", .string(c.title)), ("x", .string(c.x)),
                            ("y", .string(c.y)),
                            (
                                "series",
                                .object(
                                    c.contenders.map { name in
                                        (
                                            name,
                                            JSON.array(
                                                c.counts.map { n in
                                                    JSON.object([("n", .int(n)), ("value", cell(c.series[name]?[n]))])
                                                })
                                        )
                                    })
                            ),
                        ])
                    })
            ),
        ]).description + "\n"
    }
}

/// Writes `text` to `path`, creating the directory if needed.
func writeFile(_ path: String, _ text: String) throws(SystemError) {
    // mkdir -p of the parent directories; existing ones just fail with EEXIST.
    var index = path.startIndex
    while let slash = path[index...].firstIndex(of: "/") {
        let directory = String(path[..<slash])
        if !directory.isEmpty { mkdir(directory, 0o755) }
        index = path.index(after: slash)
    }
    guard let file = fopen(path, "w") else { throw SystemError("fopen \(path)", errno: errno) }
    defer { fclose(file) }
    guard fputs(text, file) >= 0 else { throw SystemError("write \(path)", errno: errno) }
}
