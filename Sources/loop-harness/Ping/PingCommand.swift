import Cluster
import CommandLineOptions
import Compat
import Glibc
import HttpServer
import LoopTools
import NodeSupport
import UdpServer

let pingOptions = CommandOptions(
    command: "ping",
    summary:
        "Echo requests to a node; prints RTT p50/p99, throughput and errors. Exits 1 unless every request is answered.",
    options: [
        targetOption,
        .integer("--count", 1...10_000_000, default: 100, "requests to send"),
        .integer(
            "--size", 0...DatagramGeometry.defaultMaxMessageSize, default: 64,
            "bytes per request, up to the largest message a server takes"),
        .integer("--concurrency", 1...1024, default: 1, "requests in flight at once"),
        .integer(
            "--type", 0...255, default: Int(NodeMessage.echo.rawValue),
            "message type: 2 echo (the reply must equal the request), 1 ping (an empty reply); "
                + "any other is sent as it is and any reply counts (17, 0x11: the original's ping)"),
        timeoutOption,
    ])

/// `loop-harness ping`: echo requests against a node; RTT percentiles and throughput.
func runPingCommand(_ args: Arguments) throws -> Int32 {
    let options = try args.parse(pingOptions)
    return try withClient(options) { loop, client, peer in
        let report = try runPing(
            loop: loop, client: client, to: peer, count: options.int("--count"),
            size: options.int("--size"), concurrency: options.int("--concurrency"),
            timeoutMs: options.int("--timeout-ms"), rawType: UInt8(options.int("--type")))
        let ok = report.replies == report.sent && report.sent > 0
        // Every request failed the same way: say it once, as stats and shutdown do.
        let failure =
            report.replies == 0 && report.errors.count == 1 && report.timedOut > 0
            ? failureText(.timedOut, peer: peer, client: client) : nil
        if options.json {
            var fields: [(String, JSON)] = [("ok", .bool(ok)), ("to", .string(peer.description))]
            if let failure { fields.append(("error", .string(failure))) }
            if case .object(let figures) = report.json { fields += figures }
            say(JSON.object(fields).description)
        } else {
            say("ping \(peer) (backend \(loop.kind)):")
            say(report.summary)
            if let failure { sayError("loop-harness ping: \(failure)") }
        }
        return ok ? 0 : 1
    }
}
