import CommandLineOptions
import Compat
import Glibc
import LoopTools
import UdpServer

/// What a run of requests measured.
struct PingReport {
    var sent = 0
    var completed = 0
    var replies = 0
    /// Failures by kind (timed out, no slots, remote errno …).
    var errors: [String: Int] = [:]
    var corruptReplies = 0
    /// Round-trip times of the successful requests, ms.
    var rtts = Sample()
    var seconds = 0.0
    var payloadBytes = 0
    /// Bytes of the replies counted in `replies`.
    var replyBytes = 0

    var timedOut: Int { errors["timed out"] ?? 0 }
    var requestsPerSecond: Double { seconds > 0 ? Double(replies) / seconds : 0 }
    /// Payload megabytes per second, each way counted once.
    var megabytesPerSecond: Double { seconds > 0 ? Double(payloadBytes) / seconds / 1e6 : 0 }

    var json: JSON {
        .object([
            ("sent", .int(sent)), ("completed", .int(completed)), ("replies", .int(replies)),
            ("errors", .object(errors.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) })),
            ("corruptReplies", .int(corruptReplies)), ("replyBytes", .int(replyBytes)),
            ("rttP50Ms", .number(rtts.percentile(50))), ("rttP99Ms", .number(rtts.percentile(99))),
            ("requestsPerSecond", .number(requestsPerSecond)), ("megabytesPerSecond", .number(megabytesPerSecond)),
            ("seconds", .number(seconds)),
        ])
    }

    var summary: String {
        let errorText =
            errors.isEmpty
            ? "none" : errors.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")
        return """
            \(replies)/\(sent) replies in \(format(seconds, 3)) s: \(format(requestsPerSecond, 0)) req/s, \(format(megabytesPerSecond)) MB/s
            rtt p50 \(format(rtts.percentile(50), 3)) ms, p99 \(format(rtts.percentile(99), 3)) ms
            errors: \(errorText)\(corruptReplies > 0 ? ", corrupt replies: \(corruptReplies)" : "")
            """
    }
}

/// Sends `count` echo requests of `size` bytes to `peer`, `concurrency` at a
/// time, driving `loop` until every one has completed (each exactly once).
func runPing(
    loop: Loop, client: UdpServer, to peer: PeerAddress, count: Int, size: Int, concurrency: Int,
    timeoutMs: Int = 10_000, niceness: Int = 0, type: NodeMessage = .echo, rawType: UInt8? = nil
) throws -> PingReport {
    var report = PingReport()
    var payload = [UInt8](repeating: 0, count: size)
    for i in payload.indices { payload[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) }
    // What a reply must be: the request for echo, empty for ping; for a type of another
    // node's (`rawType`: the original's 0x11), any reply counts.
    let wireType = rawType ?? type.rawValue
    let expected: [UInt8]? =
        switch NodeMessage(rawValue: wireType) {
        case .echo: payload
        case .ping: []
        default: nil
        }
    var inFlight = 0
    let start = monotonicNanoseconds()

    func sendNext() {
        guard report.sent < count else { return }
        report.sent += 1
        inFlight += 1
        let sentAt = monotonicNanoseconds()
        client.sendRequest(payload, type: wireType, to: peer, timeoutMs: timeoutMs, niceness: niceness) { result in
            inFlight -= 1
            report.completed += 1
            switch result {
            case .success(let reply):
                if expected == nil || reply == expected {
                    report.replies += 1
                    report.payloadBytes += size
                    report.replyBytes += reply.count
                    report.rtts.add(Double(monotonicNanoseconds() - sentAt) / 1e6)
                } else {
                    report.corruptReplies += 1
                }
            case .failure(let error):
                report.errors["\(error)", default: 0] += 1
            }
            sendNext()
        }
    }
    for _ in 0..<max(1, min(concurrency, count)) { sendNext() }
    // Every request ends by itself (reply, error or timeout); the deadline only guards against a bug.
    // Saturating: a day's timeout times ten million rounds does not fit in nanoseconds.
    let rounds = Int64(max(1, count / max(concurrency, 1)))
    let (budgetMs, overflowed) = (Int64(timeoutMs) + 30_000).multipliedReportingOverflow(by: rounds)
    let budgetNs = overflowed || budgetMs > Int64.max / 4_000_000 ? Int64.max / 4 : budgetMs * 1_000_000
    let deadline = start + budgetNs
    while report.completed < count {
        guard monotonicNanoseconds() < deadline else {
            throw CommandFailure("requests did not complete: \(report.completed)/\(count)")
        }
        if loop.takeShutdownRequest() != nil { break } // Ctrl-C: report what completed
        try loop.runOnce()
    }
    report.seconds = Double(monotonicNanoseconds() - start) / 1e9
    return report
}

/// One request, driven to completion; returns its result.
func request(
    loop: Loop, client: UdpServer, to peer: PeerAddress, type: NodeMessage, payload: [UInt8] = [],
    timeoutMs: Int = 5_000
) throws -> RpcResult {
    var outcome: RpcResult?
    client.sendRequest(payload, type: type.rawValue, to: peer, timeoutMs: timeoutMs, niceness: 0) { outcome = $0 }
    let deadline = monotonicNanoseconds() + Int64(timeoutMs + 5_000) * 1_000_000
    while outcome == nil {
        guard monotonicNanoseconds() < deadline else { throw CommandFailure("no answer from \(peer)") }
        try loop.runOnce()
    }
    return outcome!
}
