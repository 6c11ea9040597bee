import CommandLineOptions
import Compat
import Glibc
import LoopTools
import UdpServer

let attackOptions = CommandOptions(
    command: "attack",
    summary: "Floods a running node from 127.0.0.2 (never-finished requests, then announcements of the "
        + "largest message) while pinging it from 127.0.0.1, pings again the moment the flood stops, then "
        + "sends requests from a source that never acknowledges (127.0.0.3). Exits 1 when a phase answers "
        + "fewer pings than --min-success % or the amplification is above --max-factor.",
    options: [
        targetOption,
        .integer("--seconds", 1...3_600, default: 5, "flood seconds per phase"),
        .integer("--rate", 1...10_000_000, default: 20_000, "flood datagrams per second"),
        .integer("--min-success", 0...100, default: 99, "the least % of pings each phase must answer"),
        .integer("--max-factor", 1...1_000_000, default: 3, "the most bytes reflected per byte sent"),
    ])

/// `loop-harness attack --to 127.0.0.1:P`: the report of `runAttack`, as a table or JSON.
func runAttackCommand(_ args: Arguments) throws -> Int32 {
    let options = try args.parse(attackOptions)
    var plan = AttackPlan()
    plan.secondsPerFlood = Double(options.int("--seconds"))
    plan.floodRate = options.int("--rate")
    let minimumSuccess = Double(options.int("--min-success"))
    let maximumFactor = Double(options.int("--max-factor"))
    return try withClient(options) { loop, client, node in
        let report = try runAttack(loop: loop, client: client, node: node, plan: plan)
        let ok = report.worstSuccessPercent >= minimumSuccess && report.worstFactor <= maximumFactor
        if options.json {
            say(report.json(ok: ok).description)
        } else {
            say(report.table)
            say(
                ok
                    ? "ok: every phase answered >= \(format(minimumSuccess, 0)) % of the second peer's pings; amplification <= \(format(maximumFactor, 0))x"
                    : "FAIL: worst success \(format(report.worstSuccessPercent, 1)) % (need \(format(minimumSuccess, 0))), worst amplification \(format(report.worstFactor, 2))x (max \(format(maximumFactor, 0)))"
            )
        }
        return ok ? 0 : 1
    }
}

extension AttackReport {
    var table: String {
        var rows = [["phase", "flood datagrams", "flood/s", "pings answered", "success %", "rtt p50 ms", "rtt p99 ms"]]
        for p in phases {
            rows.append([
                p.name, "\(p.floodDatagrams)", format(p.seconds > 0 ? Double(p.floodDatagrams) / p.seconds : 0, 0),
                "\(p.pings.replies)/\(p.pings.sent)", format(p.successPercent, 1),
                format(p.pings.rtts.percentile(50), 3), format(p.pings.rtts.percentile(99), 3),
            ])
        }
        var text = columns(rows)
        var reflection = [["forged source", "requests", "bytes sent", "bytes reflected", "amplification"]]
        for r in reflections {
            reflection.append([
                r.name, "\(r.requests)", "\(r.bytesSent)", "\(r.bytesReflected)", format(r.factor, 2) + "x",
            ])
        }
        text += "\n" + columns(reflection)
        let shown = ["peerShareDrops", "evictions", "noSlotDrops", "memoryDrops", "repliesAbandoned", "corrupt"]
        let counters = nodeCounters.filter { shown.contains($0.0) }.map { "\($0.0)=\($0.1)" }
        if !counters.isEmpty { text += "\nnode: " + counters.joined(separator: " ") }
        return text
    }

    func json(ok: Bool) -> JSON {
        .object([
            ("ok", .bool(ok)),
            ("worstSuccessPercent", .number(worstSuccessPercent)), ("worstAmplification", .number(worstFactor)),
            (
                "phases",
                .array(
                    phases.map { p in
                        .object([
                            ("name", .string(p.name)), ("floodDatagrams", .int(p.floodDatagrams)),
                            ("seconds", .number(p.seconds)), ("successPercent", .number(p.successPercent)),
                            ("pings", p.pings.json),
                        ])
                    })
            ),
            (
                "reflection",
                .array(
                    reflections.map { r in
                        .object([
                            ("name", .string(r.name)), ("requests", .int(r.requests)), ("bytesSent", .int(r.bytesSent)),
                            ("bytesReflected", .int(r.bytesReflected)), ("amplification", .number(r.factor)),
                        ])
                    })
            ),
            ("node", .object(nodeCounters.map { ($0.0, .int($0.1)) })),
        ])
    }
}

/// Rows as left-aligned columns, the first row a header.
private func columns(_ rows: [[String]]) -> String {
    let widths = rows[0].indices.map { i in rows.map { $0[i].count }.max() ?? 0 }
    return rows.map { row in row.enumerated().map { $0.element.padded(to: widths[$0.offset]) }.joined(separator: "  ") }
        .joined(separator: "\n")
}
