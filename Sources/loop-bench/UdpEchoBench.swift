import Compat
import Glibc
import LoopTools

/// One load the C client puts on each echo server.
struct EchoCase {
    let label: String
    let window: Int
    /// The server runs on CPU 0; the client on CPU 1, or on CPU 0 beside it.
    let clientCPU: Int
}

let echoCases = [
    EchoCase(label: "window 1", window: 1, clientCPU: 1),
    EchoCase(label: "window 32", window: 32, clientCPU: 1),
    // On this kind of VM a wake-up across CPUs costs tens of µs; the same load
    // with both ends on one CPU shows what the loops do without that cost.
    EchoCase(label: "window 32, one CPU", window: 32, clientCPU: 0),
]

/// udp-echo: each server is a separate process pinned to CPU 0, loaded by the
/// C client with 64-byte datagrams. The servers run one at a time, in a
/// rotating order on each repetition, so drift in the machine's speed (other
/// work on this shared machine) spreads over all of them.
func benchUdpEcho(_ context: BenchContext) throws {
    let budget = context.budget
    let workload = "udp-echo"
    context.report.peer("C epoll echo (scripts/peers/epoll-echo.c)", for: workload)

    var servers: [(column: Column, argv: [String])] = LoopBackendKind.allCases.map {
        (Column($0), [context.selfPath, "echo-server", "--backend", $0.rawValue, "--seconds", "600"])
    }
    let peerServer = context.peer("epoll-echo")
    if let peerServer { servers.append((.peer, [peerServer, "--seconds", "600"])) }
    guard let client = context.peer("udp-client") else {
        for c in echoCases { addEchoRows(context.report, c, results: [:], peerMissing: "not built") }
        context.report.add(echoTarget(nil, note: "the C client is not built (run scripts/bench)"))
        return
    }

    var results: [Column: [String: [[String: String]]]] = [:]
    for repetition in 0..<budget.echoRepeats {
        for (column, argv) in rotated(servers, by: repetition) {
            let server = try spawn(argv, cpu: 0)
            let port = try server.expect("ready", timeoutMs: 10_000)["port"] ?? "0"
            for c in echoCases {
                let load = try spawn(
                    [
                        client, "--port", port, "--window", String(c.window), "--size", "64",
                        "--warmup-ms", String(budget.echoWarmupMs),
                        "--ms", String(budget.echoMeasureMs),
                    ], cpu: c.clientCPU)
                let result = try load.expect("result", timeoutMs: budget.echoMeasureMs + budget.echoWarmupMs + 10_000)
                load.waitForExit()
                results[column, default: [:]][c.label, default: []].append(result)
                sayError(
                    "  \(column) \(c.label): \(result["rtt_per_s"] ?? "?") RTT/s, p50 \(result["p50_us"] ?? "?") µs"
                        + (result["lost"].map { $0 == "0" ? "" : ", \($0) lost" } ?? ""))
            }
            server.terminate()
            _ = try? server.expect("done", timeoutMs: 5_000)
            server.waitForExit()
        }
    }
    for c in echoCases {
        addEchoRows(
            context.report, c, results: results.mapValues { $0[c.label] ?? [] },
            peerMissing: peerServer == nil ? "not built" : nil)
    }
    for c in echoCases where c.clientCPU == 1 {
        let series = [Column.epoll, .legacy, .peer].compactMap { column in
            mergedCDF(results[column]?[c.label] ?? []).map { (column == .peer ? "C epoll echo" : "\(column)", $0) }
        }
        context.report.add(
            Distribution(name: "echo \(c.label)", title: "UDP echo round trip, 64 B, \(c.label)", series: series))
    }
    let row = context.report.row(workload, "window 32", "rtt_per_s")
    let r = row?.epollOverPeer
    var target = echoTarget(r, note: r == nil ? "no C echo figure" : nil)
    target.spread = row?.spread(.epoll, over: .peer)
    context.report.add(target)
}

private func addEchoRows(_ report: Report, _ c: EchoCase, results: [Column: [[String: String]]], peerMissing: String?) {
    for (key, metric, decimals) in [("rtt_per_s", "RTT/s", 0), ("p50_us", "p50 µs", 1), ("p99_us", "p99 µs", 1)] {
        func cell(_ column: Column) -> Cell {
            if column == .peer, let peerMissing { return .missing(peerMissing) }
            // A run that got no reply in its window (a stalled machine) has no figures.
            let values = (results[column] ?? []).filter { $0.number("samples") ?? 0 > 0 }.compactMap { $0.number(key) }
            return values.isEmpty ? .missing("failed") : .value(median(values))
        }
        var row = Row(
            workload: "udp-echo", label: c.label, metric: metric, key: key,
            epoll: cell(.epoll), legacy: cell(.legacy), peer: cell(.peer), decimals: decimals)
        row.runs = results.mapValues { $0.map { r in r.number("samples") ?? 0 > 0 ? r.number(key) ?? .nan : .nan } }
        report.add(row)
    }
}

private func echoTarget(_ ratio: Double?, note: String?) -> TargetResult {
    TargetResult(
        name: "epoll raw echo vs the C epoll echo, window 32", formula: "RTT/s epoll ÷ C echo",
        ratio: ratio, goal: .atLeast(0.9), note: note)
}

/// Which column of the table a measurement belongs to.
enum Column: String, Hashable, CustomStringConvertible {
    case epoll, legacy, peer, original
    init(_ kind: LoopBackendKind) { self = kind == .epoll ? .epoll : .legacy }
    var description: String { rawValue }
}

/// `items` rotated left by `by`: the order the contenders run in on a repetition.
func rotated<T>(_ items: [T], by: Int) -> [T] {
    guard !items.isEmpty else { return items }
    let k = by % items.count
    return Array(items[k...] + items[..<k])
}
