import Compat
import Glibc
import LoopTools
import UdpServer

/// `loop-harness serve`: a node until SIGINT/SIGTERM/SIGHUP or a save-and-exit request.
func runServe(_ args: Arguments) throws -> Int32 {
    let backend = try args.backend()
    ProcessSignals.prepare(for: backend)
    let loop = try Loop.make(backend)
    defer { try? loop.close() }
    let server = UdpServer(loop: loop, configuration: try nodeConfiguration(port: UInt16(try args.int("--port", default: 0)), args: args))
    try server.start()
    let node = RpcNode(loop: loop, server: server, savePath: args.value("--save"))
    let json = args.flag("--json")

    // A worker job at start-up: the thread pool and its wake-up path are part of every node.
    try loop.submit({ checksum(Array(repeating: 7, count: 1 << 16)) }) { _ in
        if !json { say("worker pool ready") }
    }
    var beats = 0
    try loop.registerSleep(every: 1000) {
        beats += 1
        if !json && beats % 10 == 0 {
            say("heartbeat \(beats): \(server.stats.requestsCompleted + server.stats.handlerCalls) transactions, cpu \(Int(loop.cpuUsage.rounded()))%")
        }
    }
    let seconds = try args.int("--seconds", default: 0)
    if seconds > 0 {
        let started = loop.now
        try loop.registerSleep(every: 100) { if loop.now - started >= Int64(seconds) * 1000 { loop.stop() } }
    }
    if json {
        say(JSON.object([("event", .string("serving")), ("backend", .string(backend.rawValue)),
                         ("port", .int(Int(server.port))), ("pid", .int(Int(getpid())))]).description)
    } else {
        say("serving on 127.0.0.1:\(server.port), backend \(backend), pid \(getpid())")
    }
    let reason = try loop.run()
    // Signals end the node at once: outstanding transactions end with shuttingDown.
    if reason != .stopped {
        server.shutdown(urgent: true)
        for _ in 0..<3 { try loop.runOnce() }
    }
    if json {
        say(JSON.object([("event", .string("stopped")), ("reason", .string("\(reason)")),
                         ("saved", .bool(node.saved)), ("stats", node.statsJSON())]).description)
    } else {
        say("stopped: \(reason)\(node.saved ? " (state saved)" : "")")
        say("loop:   \(loop.counters)")
        say("server: \(server.stats)")
    }
    return 0
}

/// Runs `body` with a client loop and server on an ephemeral port, and the target peer.
func withClient<R>(_ args: Arguments, _ body: (Loop, UdpServer, PeerAddress) throws -> R) throws -> R {
    guard let target = args.value("--to") else { throw UsageError("--to 127.0.0.1:PORT is required") }
    guard let peer = PeerAddress(target) else { throw UsageError("--to takes IP:PORT, not '\(target)'") }
    let backend = try args.backend()
    ProcessSignals.prepare(for: backend)
    let loop = try Loop.make(backend)
    defer { try? loop.close() }
    let client = UdpServer(loop: loop, configuration: try nodeConfiguration(port: 0, args: args))
    try client.start()
    return try body(loop, client, peer)
}

/// `loop-harness ping`: echo requests against a node; RTT percentiles and throughput.
func runPingCommand(_ args: Arguments) throws -> Int32 {
    try withClient(args) { loop, client, peer in
        let report = try runPing(loop: loop, client: client, to: peer,
                                 count: try args.int("--count", default: 100), size: try args.int("--size", default: 64),
                                 concurrency: try args.int("--concurrency", default: 1),
                                 timeoutMs: try args.int("--timeout-ms", default: 5_000))
        if args.flag("--json") {
            say(report.json.description)
        } else {
            say("ping \(peer) (backend \(loop.kind)):")
            say(report.summary)
        }
        return report.replies == report.sent && report.sent > 0 ? 0 : 1
    }
}

/// `loop-harness stats` and `loop-harness shutdown`: one request to a running node.
func runAdminCommand(_ args: Arguments, _ type: NodeMessage) throws -> Int32 {
    try withClient(args) { loop, client, peer in
        let result = try request(loop: loop, client: client, to: peer, type: type)
        let json = args.flag("--json")
        switch result {
        case .success(let reply):
            let text = String(decoding: reply, as: UTF8.self)
            if json {
                say(type == .stats ? text : JSON.object([("ok", .bool(true)), ("reply", .string(text))]).description)
            } else {
                say(type == .stats ? text : "\(peer): \(text)")
            }
            return 0
        case .failure(let error):
            if json {
                say(JSON.object([("ok", .bool(false)), ("error", .string("\(error)"))]).description)
            } else {
                sayError("\(peer): \(error)")
            }
            return 1
        }
    }
}
