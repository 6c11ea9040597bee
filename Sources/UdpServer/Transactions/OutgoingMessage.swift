/// A message being sent: which datagrams went out and which the peer acknowledged.
/// The window counts datagrams sent but not yet acknowledged.
final class OutgoingMessage {
    let bytes: [UInt8]
    let hadError: Bool
    let datagramCount: Int
    private(set) var sent: BitSet
    private(set) var acked: BitSet
    /// Every lower datagram is sent (or acked).
    private(set) var nextToSend = 0
    /// Every lower datagram is acked.
    private(set) var firstUnacked = 0
    /// One past the highest datagram ever sent; ACKs beyond it are bogus.
    private(set) var sentHighWater = 0

    init(bytes: [UInt8], hadError: Bool, geometry: DatagramGeometry) {
        self.bytes = bytes
        self.hadError = hadError
        datagramCount = geometry.datagramCount(forMessageSize: bytes.count)
        sent = BitSet(capacity: datagramCount)
        acked = BitSet(capacity: datagramCount)
    }

    var inFlight: Int { sent.count - acked.count }
    var isFullyAcked: Bool { acked.isFull }

    /// The next datagram to send, if the window allows one.
    func nextDatagram(window: Int) -> Int? {
        guard inFlight < window else { return nil }
        nextToSend = sent.firstAbsent(from: nextToSend)
        return nextToSend < datagramCount ? nextToSend : nil
    }

    func markSent(_ number: Int) {
        sent.insert(number)
        sentHighWater = max(sentHighWater, number + 1)
    }

    /// The socket did not take datagram `number` after all: it goes out again.
    func markUnsent(_ number: Int) {
        guard !acked[number], sent.remove(number) else { return }
        nextToSend = min(nextToSend, number)
    }

    enum AckOutcome: Equatable {
        case new
        case duplicate
        /// For a datagram never sent: a corrupt or forged ACK.
        case bogus
    }

    /// Records an ACK. A gap below it means the datagrams in the gap were
    /// probably lost: they are marked unsent so they go out again at once
    /// instead of after the resend time (as the original does).
    func markAcked(_ number: Int) -> AckOutcome {
        guard number < sentHighWater else { return .bogus }
        guard acked.insert(number) else { return .duplicate }
        sent.insert(number)
        var gap = number - 1
        while gap >= firstUnacked && !acked[gap] {
            if sent.remove(gap) { nextToSend = min(nextToSend, gap) }
            gap -= 1
        }
        firstUnacked = acked.firstAbsent(from: firstUnacked)
        return .new
    }

    /// The peer has the whole message (it started replying).
    func markAllAcked() {
        sent.insertAll()
        acked.insertAll()
        nextToSend = datagramCount
        firstUnacked = datagramCount
        sentHighWater = datagramCount
    }

    /// Bytes on the wire, headers included, of the datagrams sent and not acknowledged:
    /// what `prepareForResend` would send again.
    func unacknowledgedBytes(geometry: DatagramGeometry) -> Int {
        var total = 0
        var i = firstUnacked
        while i < sentHighWater {
            if !acked[i] && sent[i] {
                total +=
                    DatagramHeader.dataHeaderSize + geometry.payloadRange(ofDatagram: i, messageSize: bytes.count).count
            }
            i += 1
        }
        return total
    }

    /// Marks every unacknowledged datagram unsent, so it goes out again. Returns how many.
    func prepareForResend() -> Int {
        var cleared = 0
        var i = firstUnacked
        while i < sentHighWater {
            if !acked[i] && sent.remove(i) {
                cleared += 1
                nextToSend = min(nextToSend, i)
            }
            i += 1
        }
        return cleared
    }
}
