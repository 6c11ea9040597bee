import Compat
import Glibc
import LoopTools
import UdpServer

/// `loop-harness demo`: a node and a client in one process and one loop,
/// showing each feature once, ending with a save-and-exit request.
func runDemo(_ args: Arguments) throws -> Int32 {
    let backend = try args.backend()
    let json = args.flag("--json")
    ProcessSignals.prepare(for: backend)
    let loop = try Loop.make(backend)
    defer { try? loop.close() }
    let node = UdpServer(loop: loop, configuration: try nodeConfiguration(port: 0, args: args))
    try node.start()
    let rpcNode = RpcNode(loop: loop, server: node)
    let client = UdpServer(loop: loop, configuration: try nodeConfiguration(port: 0, args: args))
    try client.start()
    let peer = PeerAddress(ip: 0x7f00_0001, port: node.port)
    var steps: [(String, Bool, String)] = []
    func step(_ name: String, _ ok: Bool, _ detail: String) {
        steps.append((name, ok, detail))
        if !json { say("\(ok ? "ok  " : "FAIL") \(name): \(detail)") }
    }
    if !json { say("demo: backend \(backend), node on 127.0.0.1:\(node.port), client on 127.0.0.1:\(client.port)") }

    let pings = try runPing(loop: loop, client: client, to: peer, count: 500, size: 64, concurrency: 16)
    step("ping 500 x 64 B, 16 at a time", pings.replies == 500,
         "p50 \(format(pings.rtts.percentile(50), 3)) ms, p99 \(format(pings.rtts.percentile(99), 3)) ms, \(format(pings.requestsPerSecond, 0)) req/s")

    let big = try runPing(loop: loop, client: client, to: peer, count: 4, size: 1 << 20, concurrency: 2)
    step("echo 4 x 1 MiB", big.replies == 4 && big.corruptReplies == 0,
         "\(format(big.megabytesPerSecond)) MB/s, intact")

    let payload = Array(repeating: UInt8(42), count: 100_000)
    let work = try request(loop: loop, client: client, to: peer, type: .work, payload: payload)
    let expected = bytes(of: checksum(payload))
    step("worker job", (try? work.get()) == expected, "checksum computed on a worker thread, reply sent from the loop thread")

    let stats = try request(loop: loop, client: client, to: peer, type: .stats)
    let statsText = (try? stats.get()).map { String(decoding: $0, as: UTF8.self) } ?? ""
    step("stats", statsText.contains("\"backend\":\"\(backend.rawValue)\""), "\(statsText.count) bytes of JSON")

    let silent = try LoopbackSocket()
    let timedOut = try request(loop: loop, client: client, to: PeerAddress(ip: 0x7f00_0001, port: silent.port),
                               type: .ping, timeoutMs: 300)
    step("timeout against a silent peer", timedOut == .failure(.timedOut), "\(timedOut)")

    let exit = try request(loop: loop, client: client, to: peer, type: .saveAndExit)
    let stopped = try loop.run()
    step("save and exit", (try? exit.get()) == Array("saved".utf8) && rpcNode.saved && stopped == .stopped,
         "node drained and the loop stopped: \(stopped)")

    let ok = steps.allSatisfy { $0.1 }
    if json {
        say(JSON.object([
            ("backend", .string(backend.rawValue)), ("ok", .bool(ok)),
            ("steps", .array(steps.map { .object([("name", .string($0.0)), ("ok", .bool($0.1)), ("detail", .string($0.2))]) })),
            ("loop", .object(loop.counters.fields.map { ($0.0, .int($0.1)) })),
        ]).description)
    } else {
        say("loop counters: \(loop.counters)")
        say("node: \(node.stats)")
        say("\(steps.filter { $0.1 }.count) passed, \(steps.filter { !$0.1 }.count) failed")
    }
    return ok ? 0 : 1
}
