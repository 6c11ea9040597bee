import CommandLineOptions
import Compat
import Glibc
import LoopTools
import Synchronization
import UdpServer

/// `loop-harness attack`: floods a running node from one address while pinging it
/// from another, then measures what a forged source can make it send.
///
/// - slots: never-finished requests (the last datagram of two-datagram messages),
///   a fresh transaction id each, from 127.0.0.2;
/// - memory: announcements of the largest message, each a fresh id, from 127.0.0.2;
/// - recovery: pings the moment the floods stop;
/// - reflection: requests from 127.0.0.3 that never acknowledge anything (a forged
///   source); the bytes that come back over the bytes sent is the amplification.
///
/// The second peer (this client, 127.0.0.1) pings throughout; its success rate is the figure.
struct AttackReport {
    struct Phase {
        var name: String
        var floodDatagrams = 0
        var seconds = 0.0
        var pings = PingReport()
        var successPercent: Double { pings.sent > 0 ? 100 * Double(pings.replies) / Double(pings.sent) : 0 }
    }

    struct Reflection {
        var name: String
        var requests = 0
        var bytesSent = 0
        var bytesReflected = 0
        var factor: Double { bytesSent > 0 ? Double(bytesReflected) / Double(bytesSent) : 0 }
    }

    var phases: [Phase] = []
    var reflections: [Reflection] = []
    /// The node's counters afterwards (name, value), from its stats reply.
    var nodeCounters: [(String, Int)] = []

    var worstSuccessPercent: Double { phases.map(\.successPercent).min() ?? 0 }
    var worstFactor: Double { reflections.map(\.factor).max() ?? 0 }
}

struct AttackPlan {
    var secondsPerFlood = 5.0
    /// Flood datagrams per second. Far beyond what taking every slot needs (3,400 in all)
    /// yet within what one node's socket can be read at: a faster flood overflows the
    /// kernel's receive queue, which drops every source alike before any fairness applies.
    var floodRate = 20_000
    /// The second peer sends a ping this often, whether or not the earlier ones were
    /// answered, so every moment of the flood counts alike (pings one after another would
    /// count the fast moments many times and a jam once per timeout).
    var pingEveryMs = 5
    var pingTimeoutMs = 2_000
    var reflectionRequests = 50
    static let flooderIP: UInt32 = 0x7f00_0002
    static let victimIP: UInt32 = 0x7f00_0003
}

func runAttack(loop: Loop, client: UdpServer, node: PeerAddress, plan: AttackPlan) throws -> AttackReport {
    // The node takes the flooder (127.0.0.2, not one of its own addresses) at the size for
    // every other peer: `datagramSize`, whether or not --datagram-size set one size for all.
    let geometry = try DatagramGeometry(
        datagramSize: client.configuration.datagramSize,
        maxMessageSize: client.configuration.maxMessageSize)
    var report = AttackReport()

    // Never-finished requests: the 1-byte last datagram of a message one byte over a datagram.
    let partialSize = geometry.payloadSize + 1
    report.phases.append(
        try floodWhilePinging(
            "slots", loop: loop, client: client, node: node, plan: plan,
            type: .ping, pingSize: 0
        ) { id in
            DatagramHeader(
                kind: .data(messageSize: UInt32(partialSize)), messageType: NodeMessage.echo.rawValue,
                datagramNumber: 1, isFromInitiator: true, transactionId: id
            ).encoded + [7]
        })
    // The largest message announced by its last datagram, again and again.
    let largest = geometry.maxMessageSize
    let last = geometry.datagramCount(forMessageSize: largest) - 1
    let tail = [UInt8](repeating: 1, count: geometry.payloadRange(ofDatagram: last, messageSize: largest).count)
    report.phases.append(
        try floodWhilePinging(
            "memory", loop: loop, client: client, node: node, plan: plan,
            type: .echo, pingSize: 64 << 10
        ) { id in
            DatagramHeader(
                kind: .data(messageSize: UInt32(largest)), messageType: NodeMessage.echo.rawValue,
                datagramNumber: UInt32(last), isFromInitiator: true, transactionId: id
            ).encoded + tail
        })
    // At once after the floods: no garbage waited out.
    var recovery = AttackReport.Phase(name: "recovery")
    let start = monotonicNanoseconds()
    recovery.pings = try runPing(
        loop: loop, client: client, to: node, count: 100, size: 0, concurrency: 1,
        timeoutMs: plan.pingTimeoutMs, type: .ping)
    recovery.seconds = Double(monotonicNanoseconds() - start) / 1e9
    report.phases.append(recovery)

    report.reflections.append(
        try reflect(
            "echo 1000 B", loop: loop, node: node, plan: plan, type: .echo,
            payload: [UInt8](repeating: 3, count: 1_000)))
    report.reflections.append(try reflect("ping", loop: loop, node: node, plan: plan, type: .ping, payload: []))

    if case .success(let bytes) = try request(loop: loop, client: client, to: node, type: .stats) {
        report.nodeCounters = serverCounters(inStatsReply: String(decoding: bytes, as: UTF8.self))
    }
    return report
}

/// Runs a flood thread sending `datagram(id)` with a fresh id each, while this thread pings.
private func floodWhilePinging(
    _ name: String, loop: Loop, client: UdpServer, node: PeerAddress, plan: AttackPlan,
    type: NodeMessage, pingSize: Int,
    datagram: @escaping @Sendable (UInt32) -> [UInt8]
) throws -> AttackReport.Phase {
    let flooder = try LoopbackSocket(ip: AttackPlan.flooderIP)
    let stop = Atomic<Bool>(false)
    let sent = Atomic<Int>(0)
    let target = node
    let burst = 64
    let burstNanoseconds = Int64(1e9 * Double(burst) / Double(max(1, plan.floodRate)))
    let thread = startThread(blocking: loopOwnedSignals) { [flooder] in
        var id: UInt32 = 1
        var due = monotonicNanoseconds()
        while !stop.load(ordering: .relaxed) {
            for _ in 0..<burst {
                let bytes = datagram(id)
                if flooder.send(to: target.port, ip: target.ip, bytes) == bytes.count {
                    sent.add(1, ordering: .relaxed)
                }
                id = id == DatagramHeader.maxTransactionId ? 1 : id + 1
            }
            flooder.drain() // cancel ACKs and the like: read and forgotten
            due += burstNanoseconds
            let wait = due - monotonicNanoseconds()
            if wait > 0 { usleep(UInt32(min(wait / 1_000, 1_000_000))) }
        }
    }
    defer {
        stop.store(true, ordering: .relaxed)
        joinThread(thread)
    }
    var phase = AttackReport.Phase(name: name)
    let start = monotonicNanoseconds()
    phase.pings = try pacedPings(
        loop: loop, client: client, to: node, type: type, size: pingSize,
        everyMs: plan.pingEveryMs, forSeconds: plan.secondsPerFlood, timeoutMs: plan.pingTimeoutMs)
    phase.seconds = Double(monotonicNanoseconds() - start) / 1e9
    phase.floodDatagrams = sent.load(ordering: .relaxed)
    return phase
}

/// One request every `everyMs` for `seconds`, each with its own timeout, then until all ended.
private func pacedPings(
    loop: Loop, client: UdpServer, to node: PeerAddress, type: NodeMessage, size: Int,
    everyMs: Int, forSeconds seconds: Double, timeoutMs: Int
) throws -> PingReport {
    var report = PingReport()
    let payload = [UInt8](repeating: 5, count: size)
    let expected = type == .echo ? payload : []
    let start = monotonicNanoseconds()
    let end = start + Int64(seconds * 1e9)
    let ticker = try loop.registerSleep(every: everyMs) {
        guard monotonicNanoseconds() < end else { return }
        report.sent += 1
        let sentAt = monotonicNanoseconds()
        client.sendRequest(payload, type: type.rawValue, to: node, timeoutMs: timeoutMs, niceness: 0) { result in
            report.completed += 1
            switch result {
            case .success(let reply) where reply == expected:
                report.replies += 1
                report.payloadBytes += size
                report.rtts.add(Double(monotonicNanoseconds() - sentAt) / 1e6)
            case .success: report.corruptReplies += 1
            case .failure(let error): report.errors["\(error)", default: 0] += 1
            }
        }
    }
    defer { try? loop.unregister(ticker) }
    let deadline = end + Int64(timeoutMs + 10_000) * 1_000_000
    while monotonicNanoseconds() < end || report.completed < report.sent {
        guard monotonicNanoseconds() < deadline else {
            throw CommandFailure("pings did not complete: \(report.completed)/\(report.sent)")
        }
        try loop.runOnce()
    }
    report.seconds = Double(monotonicNanoseconds() - start) / 1e9
    return report
}

/// Requests from a source that never acknowledges; what comes back over what went.
private func reflect(
    _ name: String, loop: Loop, node: PeerAddress, plan: AttackPlan, type: NodeMessage,
    payload: [UInt8]
) throws -> AttackReport.Reflection {
    let victim = try LoopbackSocket(ip: AttackPlan.victimIP)
    var result = AttackReport.Reflection(name: name)
    for id in 1...UInt32(plan.reflectionRequests) {
        let datagram =
            DatagramHeader(
                kind: .data(messageSize: UInt32(payload.count)), messageType: type.rawValue,
                datagramNumber: 0, isFromInitiator: true, transactionId: id
            ).encoded + payload
        if victim.send(to: node.port, ip: node.ip, datagram) == datagram.count {
            result.requests += 1
            result.bytesSent += datagram.count
        }
    }
    // Long enough for a minute's worth of resends to have begun many times over (170-200 ms apart).
    let end = monotonicNanoseconds() + 3_000_000_000
    while monotonicNanoseconds() < end {
        result.bytesReflected += victim.drainCounting().bytes
        usleep(10_000)
    }
    result.bytesReflected += victim.drainCounting().bytes
    return result
}

/// The "server" object of a node's stats reply, as name/value pairs.
func serverCounters(inStatsReply text: String) -> [(String, Int)] {
    guard let start = text.firstRange(of: "\"server\":{") else { return [] }
    let body = text[start.upperBound...].prefix { $0 != "}" }
    return body.split(separator: ",").compactMap { pair in
        let parts = pair.split(separator: ":")
        guard parts.count == 2, let value = Int(parts[1]) else { return nil }
        return (String(parts[0].filter { $0 != "\"" }), value)
    }
}
