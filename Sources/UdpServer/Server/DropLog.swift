/// What the server refused or gave up under pressure, said in one short line at
/// most once per interval (as the original logs "No udp slots" at most once a
/// second): a flood must not also flood the log.
struct DropLog {
    enum Reason: Int, CaseIterable {
        case peerSlotShare, peerByteShare, noSlot, noMemory, evicted, replyAbandoned, unauthorized

        var phrase: String {
            switch self {
            case .peerSlotShare: return "new requests over their address's share of incoming slots"
            case .peerByteShare: return "messages over their address's share of buffered bytes"
            case .noSlot: return "new requests with no incoming slot free"
            case .noMemory: return "messages beyond the incoming memory cap or size limit"
            case .evicted: return "stalled partial requests evicted"
            case .replyAbandoned: return "replies abandoned (address never acknowledged)"
            case .unauthorized: return "unauthorized datagrams (not from a member, a local network or an admin)"
            }
        }
    }

    /// Distinct addresses remembered per reason in one interval; more are counted, not named.
    private static let addressLimit = 64

    private var counts = [Int](repeating: 0, count: Reason.allCases.count)
    private var byAddress = [[UInt32: Int]](repeating: [:], count: Reason.allCases.count)
    private var lastLine: Int64?

    /// Something was noted that no line has reported yet.
    var hasPending: Bool { counts.contains { $0 > 0 } }

    mutating func note(_ reason: Reason, from ip: UInt32) {
        counts[reason.rawValue] += 1
        if byAddress[reason.rawValue][ip] != nil || byAddress[reason.rawValue].count < Self.addressLimit {
            byAddress[reason.rawValue][ip, default: 0] += 1
        }
    }

    /// The line to log now, if anything was noted and the interval has passed; it starts a new interval.
    mutating func line(at now: Int64, intervalMs: Int) -> String? {
        guard counts.contains(where: { $0 > 0 }) else { return nil }
        if let lastLine, now - lastLine < Int64(intervalMs), now >= lastLine { return nil }
        var parts: [String] = []
        for reason in Reason.allCases where counts[reason.rawValue] > 0 {
            var part = "\(counts[reason.rawValue]) \(reason.phrase)"
            if let top = byAddress[reason.rawValue].max(by: { $0.value < $1.value }) {
                part += " (most from \(PeerAddress(ip: top.key, port: 0).ipString): \(top.value))"
            }
            parts.append(part)
        }
        let seconds = lastLine.map { " in \((now - $0 + 500) / 1000) s" } ?? ""
        counts = counts.map { _ in 0 }
        byAddress = byAddress.map { _ in [:] }
        lastLine = now
        return "udp: dropped\(seconds): " + parts.joined(separator: "; ")
    }
}
