import Compat
import Glibc
import LoopTools
import UdpServer

/// rpc: UdpServer round trips between two processes on one backend, the
/// server pinned to CPU 0 and the client to CPU 1 (as in udp-echo). A request
/// of `size` bytes is answered with a 64-byte reply; a 1-dgram RPC is four
/// datagrams (request, its ACK, reply, its ACK).
private struct RpcCase {
    let label: String
    let size: Int
    let concurrency: Int
    /// The server runs on CPU 0; the client on CPU 1, or on CPU 0 beside it.
    var clientCPU = 1
    /// MB/s is reported for the multi-datagram messages.
    var reportsThroughput: Bool { size > 64 }
}

private let rpcCases = [
    RpcCase(label: "1 dgram, c=1", size: 64, concurrency: 1),
    RpcCase(label: "1 dgram, c=32", size: 64, concurrency: 32),
    RpcCase(label: "64 KiB, c=1", size: 64 << 10, concurrency: 1),
    RpcCase(label: "64 KiB, c=32", size: 64 << 10, concurrency: 32),
    RpcCase(label: "1 MiB, c=1", size: 1 << 20, concurrency: 1),
    // As udp-echo's "one CPU" case: without the cost of wake-ups across CPUs.
    RpcCase(label: "1 dgram, c=32, one CPU", size: 64, concurrency: 32, clientCPU: 0),
]

private let benchRequestType: UInt8 = 42
private let replySize = 64

func benchRpc(_ context: BenchContext) throws {
    let budget = context.budget
    var results: [Column: [String: [[String: String]]]] = [:]
    for repetition in 0..<budget.rpcRepeats {
        for kind in rotated(LoopBackendKind.allCases, by: repetition) {
            let server = try spawn(
                [context.selfPath, "rpc-server", "--backend", kind.rawValue, "--seconds", "600"], cpu: 0)
            let port = try server.expect("ready", timeoutMs: 10_000)["port"] ?? "0"
            for c in rpcCases {
                let client = try spawn(
                    [
                        context.selfPath, "rpc-client", "--backend", kind.rawValue, "--port", port,
                        "--size", String(c.size), "--concurrency", String(c.concurrency),
                        "--warmup-ms", String(budget.rpcWarmupMs), "--ms", String(budget.rpcMeasureMs),
                    ],
                    cpu: c.clientCPU)
                let result = try client.expect("result", timeoutMs: budget.rpcWarmupMs + budget.rpcMeasureMs + 30_000)
                client.waitForExit()
                results[Column(kind), default: [:]][c.label, default: []].append(result)
                sayError(
                    "  \(kind) \(c.label): \(result["rpc_per_s"] ?? "?") RPC/s, p50 \(result["p50_us"] ?? "?") µs"
                        + (result["failed"].map { $0 == "0" ? "" : ", \($0) failed" } ?? ""))
            }
            server.terminate()
            _ = try? server.expect("done", timeoutMs: 5_000)
            server.waitForExit()
        }
    }

    for c in rpcCases {
        var metrics = [("rpc_per_s", "RPC/s", 0), ("p50_us", "p50 µs", 1), ("p99_us", "p99 µs", 1)]
        if c.reportsThroughput { metrics.append(("mb_per_s", "MB/s", 1)) }
        for (key, metric, decimals) in metrics {
            func cell(_ column: Column) -> Cell {
                // A run that completed nothing in its window (a stalled machine) has no figures.
                let values = (results[column]?[c.label] ?? []).filter { $0.number("samples") ?? 0 > 0 }
                    .compactMap { $0.number(key) }
                return values.isEmpty ? .missing("failed") : .value(median(values))
            }
            var row = Row(
                workload: "rpc", label: c.label, metric: metric, key: key,
                epoll: cell(.epoll), legacy: cell(.legacy), peer: nil, decimals: decimals)
            row.runs = results.mapValues { byCase in
                (byCase[c.label] ?? []).map { r in r.number("samples") ?? 0 > 0 ? r.number(key) ?? .nan : .nan }
            }
            context.report.add(row)
        }
    }

    for label in ["1 dgram, c=1", "1 dgram, c=32"] {
        let series = [Column.epoll, .legacy].compactMap { column in
            mergedCDF(results[column]?[label] ?? []).map { ("\(column)", $0) }
        }
        context.report.add(
            Distribution(name: "rpc \(label)", title: "RPC round trip, 64 B request, \(label)", series: series))
    }

    // The C echo's RTT rate at window 32 comes from the udp-echo rows of this run; repetition i
    // of one is paired with repetition i of the other for the spread.
    for (rpcCase, echoCase, name) in [
        ("1 dgram, c=32", "window 32", "UdpServer 1-dgram RPC rate vs the C echo RTT rate"),
        // The same comparison with client and server sharing one CPU (informational).
        ("1 dgram, c=32, one CPU", "window 32, one CPU", "(same, both ends on one CPU)"),
    ] {
        let rpc = context.report.row("rpc", rpcCase, "rpc_per_s")
        let echo = context.report.row("udp-echo", echoCase, "rtt_per_s")
        let r = quotient(rpc?.epoll.number, echo?.peer?.number)
        var target = TargetResult(
            name: name,
            formula: "RPC/s epoll c=32 ÷ C echo RTT/s w=32" + (echoCase.hasSuffix("CPU") ? ", one CPU" : ""),
            ratio: r, goal: .atLeast(0.45), note: r == nil ? "needs the udp-echo and rpc figures of the same run" : nil)
        target.spread = Spread.ofRatios(rpc?.runs[.epoll] ?? [], echo?.runs[.peer] ?? [])
        target.alsoUses = ["udp-echo"]
        context.report.add(target)
    }
}

/// `loop-bench rpc-server`: a UdpServer answering every request of the bench
/// type with a 64-byte reply. Prints `ready port=P`, runs until SIGTERM.
func runRpcServer(_ options: Options) throws -> Int32 {
    let backend = try options.backend()
    ProcessSignals.prepare(for: backend)
    let seconds = try options.int("--seconds", default: 0)
    let loop = try Loop.make(backend)
    var configuration = UdpServerConfiguration.loopback
    configuration.port = UInt16(try options.int("--port", default: 0))
    configuration.datagramsPerSystemCall = try options.int(
        "--datagrams-per-call", default: configuration.datagramsPerSystemCall)
    let server = UdpServer(loop: loop, configuration: configuration)
    try server.start()
    let reply = [UInt8](repeating: 0x5a, count: replySize)
    server.registerHandler(type: benchRequestType) { [unowned server] request in
        try? server.sendReply(reply, to: request)
    }
    if seconds > 0 {
        // A safety net: an orphaned server stops by itself.
        let deadline = loop.now + Int64(seconds) * 1000
        try loop.registerSleep(every: 1000) { if loop.now >= deadline { loop.stop() } }
    }
    say("ready port=\(server.port) pid=\(getpid()) backend=\(backend)")

    _ = try loop.run()
    let stats = server.stats
    server.shutdown(urgent: true) // outside a batch, so the socket closes at once
    say("done repliesSent=\(stats.repliesSent) datagramsIn=\(stats.datagramsIn) polls=\(loop.counters.polls)")
    try loop.close()
    return 0
}

/// `loop-bench rpc-client`: keeps `--concurrency` requests of `--size` bytes in
/// flight to 127.0.0.1:`--port` and prints
/// `result rpc_per_s=... p50_us=... p99_us=... mb_per_s=... failed=...`.
func runRpcClient(_ options: Options) throws -> Int32 {
    let backend = try options.backend()
    ProcessSignals.prepare(for: backend)
    let port = try options.int("--port", default: 0)
    let size = try options.int("--size", default: 64)
    let concurrency = try options.int("--concurrency", default: 1)
    let warmupMs = try options.int("--warmup-ms", default: 200)
    let measureMs = try options.int("--ms", default: 1000)
    guard port > 0, size >= 0, concurrency >= 1 else {
        throw UsageError("rpc-client needs --port, --size >= 0, --concurrency >= 1")
    }

    let loop = try Loop.make(backend)
    var configuration = UdpServerConfiguration.loopback
    configuration.datagramsPerSystemCall = try options.int(
        "--datagrams-per-call", default: configuration.datagramsPerSystemCall)
    let client = UdpServer(loop: loop, configuration: configuration)
    try client.start()
    let peer = PeerAddress.loopback(port: UInt16(port))
    let payload = [UInt8](repeating: 0xa5, count: size)
    let start = monotonicNanoseconds()
    let measureFrom = start + Int64(warmupMs) * 1_000_000
    let measureUntil = measureFrom + Int64(measureMs) * 1_000_000

    var latencies = Sample()
    var inFlight = 0
    var failed = 0
    var firstFailure: RpcError?
    func issue() {
        let sentAt = monotonicNanoseconds()
        inFlight += 1
        client.sendRequest(payload, type: benchRequestType, to: peer, timeoutMs: 5_000, niceness: 0) { result in
            inFlight -= 1
            let now = monotonicNanoseconds()
            switch result {
            case .success:
                // Counted when it completes inside the window, like the echo client.
                if now >= measureFrom && now < measureUntil { latencies.add(Double(now - sentAt) / 1000) }
            case .failure(let error):
                failed += 1
                if firstFailure == nil { firstFailure = error }
            }
            if now < measureUntil { issue() } else if inFlight == 0 { loop.stop() }
        }
    }
    for _ in 0..<concurrency { issue() }
    _ = try loop.run()

    let seconds = Double(measureMs) / 1000
    let rate = Double(latencies.count) / seconds
    say(
        "result rpc_per_s=\(format(rate, decimals: 0)) p50_us=\(format(latencies.percentile(50), decimals: 1))"
            + " p99_us=\(format(latencies.percentile(99), decimals: 1))"
            + " mb_per_s=\(format(rate * Double(size) / 1e6, decimals: 1)) samples=\(latencies.count) failed=\(failed)"
            + " " + cdfField(latencies)
            + (firstFailure.map { " first_failure=\(String(describing: $0).replacingSpaces())" } ?? ""))
    client.shutdown(urgent: true)
    try loop.close()
    return 0
}

private extension String {
    /// Keeps a value one `key=value` token.
    func replacingSpaces() -> String { String(map { $0 == " " ? "_" : $0 }) }
}
