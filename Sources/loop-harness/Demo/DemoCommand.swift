import CommandLineOptions
import Compat
import Glibc
import LoopTools
import NodeSupport
import UdpServer

let demoOptions = CommandOptions(
    command: "demo",
    summary: "A node and a client in one process: pings, 1 MiB echoes, a worker job, stats, a timeout, "
        + "then save-and-exit. Exits 1 if any step fails.",
    options: [])

/// One step of the demo: a short name, whether it passed, a sentence for a person
/// and its figures (the JSON has the figures, never numbers inside text).
private struct DemoStep {
    let name: String
    let ok: Bool
    let detail: String
    var figures: [(String, JSON)] = []

    var json: JSON { .object([("name", .string(name)), ("ok", .bool(ok)), ("figures", .object(figures))]) }
}

/// `loop-harness demo`: a node and a client in one process and one loop,
/// showing each feature once, ending with a save-and-exit request.
func runDemo(_ args: Arguments) throws -> Int32 {
    let options = try args.parse(demoOptions)
    let backend = try options.backend()
    let json = options.json
    ProcessSignals.prepare(for: backend)
    let loop = try Loop.make(backend)
    defer { try? loop.close() }
    let node = UdpServer(loop: loop, configuration: nodeConfiguration(options: options))
    try node.start()
    let rpcNode = RpcNode(loop: loop, server: node)
    let client = UdpServer(loop: loop, configuration: nodeConfiguration(options: options))
    try client.start()
    let peer = PeerAddress(ip: 0x7f00_0001, port: node.port)
    var steps: [DemoStep] = []
    func step(_ step: DemoStep) {
        steps.append(step)
        if !json { say("\(step.ok ? "ok  " : "FAIL") \(step.name): \(step.detail)") }
    }
    if !json { say("demo: backend \(backend), node on 127.0.0.1:\(node.port), client on 127.0.0.1:\(client.port)") }

    let pings = try runPing(loop: loop, client: client, to: peer, count: 500, size: 64, concurrency: 16)
    step(
        DemoStep(
            name: "ping 500 x 64 B, 16 at a time", ok: pings.replies == 500,
            detail:
                "p50 \(format(pings.rtts.percentile(50), 3)) ms, p99 \(format(pings.rtts.percentile(99), 3)) ms, \(format(pings.requestsPerSecond, 0)) req/s",
            figures: [
                ("requests", .int(500)), ("size", .int(64)), ("concurrency", .int(16)),
                ("replies", .int(pings.replies)),
                ("rttP50Ms", .number(pings.rtts.percentile(50))), ("rttP99Ms", .number(pings.rtts.percentile(99))),
                ("requestsPerSecond", .number(pings.requestsPerSecond)),
            ]))

    let big = try runPing(loop: loop, client: client, to: peer, count: 4, size: 1 << 20, concurrency: 2)
    step(
        DemoStep(
            name: "echo 4 x 1 MiB", ok: big.replies == 4 && big.corruptReplies == 0,
            detail: "\(format(big.megabytesPerSecond)) MB/s, intact",
            figures: [
                ("requests", .int(4)), ("size", .int(1 << 20)), ("replies", .int(big.replies)),
                ("corruptReplies", .int(big.corruptReplies)), ("megabytesPerSecond", .number(big.megabytesPerSecond)),
            ]))

    let payload = Array(repeating: UInt8(42), count: 100_000)
    let work = try request(loop: loop, client: client, to: peer, type: .work, payload: payload)
    let expected = bytes(of: checksum(payload))
    step(
        DemoStep(
            name: "worker job", ok: (try? work.get()) == expected,
            detail: "checksum computed on a worker thread, reply sent from the loop thread",
            figures: [("payloadBytes", .int(payload.count))]))

    let stats = try request(loop: loop, client: client, to: peer, type: .stats)
    let statsText = (try? stats.get()).map { String(decoding: $0, as: UTF8.self) } ?? ""
    step(
        DemoStep(
            name: "stats", ok: statsText.contains("\"backend\":\"\(backend.rawValue)\""),
            detail: "\(statsText.count) bytes of JSON", figures: [("replyBytes", .int(statsText.utf8.count))]))

    let silent = try LoopbackSocket()
    let timedOut = try request(
        loop: loop, client: client, to: PeerAddress(ip: 0x7f00_0001, port: silent.port),
        type: .ping, timeoutMs: 300)
    step(
        DemoStep(
            name: "timeout against a silent peer", ok: timedOut == .failure(.timedOut), detail: "\(timedOut)",
            figures: [("timeoutMs", .int(300))]))

    let exit = try request(loop: loop, client: client, to: peer, type: .saveAndExit)
    let stopped = try loop.run()
    step(
        DemoStep(
            name: "save and exit", ok: (try? exit.get()) == Array("saved".utf8) && rpcNode.saved && stopped == .stopped,
            detail: "node drained and the loop stopped: \(stopped)"))

    let ok = steps.allSatisfy(\.ok)
    if json {
        say(
            JSON.object([
                ("backend", .string(backend.rawValue)), ("ok", .bool(ok)),
                ("steps", .array(steps.map(\.json))),
                (
                    "loop",
                    .object(loop.counters.fields.map { ($0.0, .int($0.1)) } + [("cpuPercent", .number(loop.cpuUsage))])
                ),
                ("node", .object(node.stats.fields.map { ($0.0, .int($0.1)) })),
                ("client", .object(client.stats.fields.map { ($0.0, .int($0.1)) })),
            ]).description)
    } else {
        say("")
        say("the node's counters:")
        for line in CounterReport.lines(loop: loop.counters, server: node.stats) { say("  " + line) }
        say("\(steps.filter(\.ok).count) passed, \(steps.filter { !$0.ok }.count) failed")
        say(
            "next: `loop-harness serve` runs a node on its own; it prints the commands that talk to it "
                + "(loop-harness ping, stats, shutdown)")
    }
    return ok ? 0 : 1
}
