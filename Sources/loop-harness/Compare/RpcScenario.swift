import Compat
import Glibc
import LoopTools
import UdpServer

/// RPC cases: message size × injected loss.
private let rpcCases: [(name: String, size: Int, dropEvery: Int?)] = [
    ("1dgram", 1000, nil), ("1dgram-loss10", 1000, 10), ("64k", 65536, nil), ("64k-loss10", 65536, 10),
]

let rpcScenario = Scenario(
    name: "rpc",
    summary:
        "UdpServer round trips (1 dgram, 64 KiB) with 0 % and 10 % injected loss (every 10th datagram dropped, both ways)",
    tolerance: "every request completes on both, none times out; RTT p50 within 3x (+2 ms) of each other",
    measure: { kind, options in
        try withCompareLoop(kind) { loop in
            var out: Measurements = []
            for c in rpcCases {
                func configuration() -> UdpServerConfiguration {
                    var config = UdpServerConfiguration()
                    config.datagramSize = DatagramGeometry.loopbackDatagramSize
                    if let n = c.dropEvery { config.datagramFilter = LossInjector(.dropEvery(n)) }
                    return config
                }
                let node = UdpServer(loop: loop, configuration: configuration())
                try node.start()
                let handlers = RpcNode(loop: loop, server: node)
                let client = UdpServer(loop: loop, configuration: configuration())
                try client.start()
                let count = options.quick ? 20 : 100
                let report = try runPing(
                    loop: loop, client: client, to: PeerAddress(ip: 0x7f00_0001, port: node.port),
                    count: count, size: c.size, concurrency: 4, timeoutMs: 10_000)
                options.distributions.record(kind, "rpc \(c.name): round trip, ms", report.rtts)
                out += [
                    ("completed:\(c.name)", Double(report.completed)), ("replies:\(c.name)", Double(report.replies)),
                    ("timedOut:\(c.name)", Double(report.timedOut)),
                    ("p50ms:\(c.name)", report.rtts.percentile(50)), ("p99ms:\(c.name)", report.rtts.percentile(99)),
                ]
                var drained = 0
                node.shutdown(urgent: true) { drained += 1 }
                client.shutdown(urgent: true) { drained += 1 }
                try drive(loop) { drained == 2 }
                withExtendedLifetime(handlers) {}
            }
            return out
        }
    },
    judge: { e, l, scale in
        for c in rpcCases {
            for (name, f) in [("epoll", e), ("legacy", l)] {
                if f["replies:\(c.name)"] != f["completed:\(c.name)"] || f["timedOut:\(c.name)"] != 0 {
                    return "\(c.name): \(name) lost requests"
                }
            }
            if e["completed:\(c.name)"] != l["completed:\(c.name)"] { return "\(c.name): completion counts differ" }
            guard let ep = e["p50ms:\(c.name)"], let lp = l["p50ms:\(c.name)"] else { return "\(c.name): no RTT" }
            if max(ep, lp) > (3 * min(ep, lp) + 2) * scale {
                return "\(c.name): RTT p50 \(format(ep)) vs \(format(lp)) ms"
            }
        }
        return nil
    })
