/// One transaction in progress at this end (the original's `UdpSlot`): a request we
/// sent and are waiting on, or a request we received and are answering.
final class Transaction {
    enum Phase: Equatable {
        // Requester side.
        case sendingRequest
        case awaitingReply
        case receivingReply
        // Responder side.
        case receivingRequest
        case awaitingHandler
        case handling
        case sendingReply
        // Both: out of the table, nothing more happens.
        case finished
    }

    let key: TransactionKey
    let type: UInt8
    /// 0 or 1 (2 is treated as 1 everywhere, as in the loop).
    let niceness: Int
    /// Cut short for incoming transactions when the server shuts down.
    var timeoutMs: Int64
    let serial: UInt64
    var phase: Phase
    /// Last time anything new arrived for it (or it started); its timeout counts from here.
    var lastProgress: Int64
    /// Last time any datagram arrived for it, copies included (the original's `m_lastReadTime`).
    var lastHeard: Int64

    /// The message this end sends: the request, or later the reply.
    var outgoing: OutgoingMessage?
    /// The message this end receives; nil before its first datagram.
    var incoming: IncomingMessage?
    /// Bytes of `maxBufferedIncomingBytes` this transaction's `incoming` holds.
    var reservedBytes = 0
    /// The size of the message received, once its first datagram came.
    var receivedSize: Int?

    // What a reply may cost, for a peer that never acknowledged anything.
    /// Datagram bytes the peer sent for this transaction, copies included.
    var bytesHeard = 0
    /// Datagram bytes this end sent for it.
    var bytesSent = 0
    /// The peer acknowledged a datagram of this transaction.
    var peerAcknowledged = false
    /// A request sent whole again (`requestResendAfterMs`): its ACKs are not progress.
    var wasResentWhole = false
    /// Requester: times it asked for a reply that is late (each doubles the wait before the
    /// next): the last request datagram sent again, or, once the reply began, the ACK of
    /// the last reply datagram received.
    var replyPokes = 0
    /// The number of the last data datagram received.
    var lastReceivedNumber = 0
    /// Responder: copies of the request that came while the reply was being sent, each
    /// the requester asking again: each lets a stranger's reply be resent once more.
    var resendCredits = 0
    /// When it started, for the progress rate of a partial request.
    let startedAt: Int64

    /// How its messages are cut: chosen once from the peer's address (`UdpServer.geometry(toward:)`).
    let geometry: DatagramGeometry

    // Resending.
    let resendPolicy: ResendPolicy
    var resendCount = 0
    var resendTimeMs = 0
    var lastSend: Int64 = 0

    /// ACKs whose send would have blocked; sent before any data.
    var pendingAcks: Set<UInt32> = []
    var isQueuedForSend = false

    // Requester side.
    let requestID: UInt64?
    var callback: ((RpcResult) -> Void)?

    init(
        key: TransactionKey, type: UInt8, niceness: Int, timeoutMs: Int64, serial: UInt64,
        phase: Phase, now: Int64, resendPolicy: ResendPolicy, geometry: DatagramGeometry,
        requestID: UInt64? = nil, callback: ((RpcResult) -> Void)? = nil
    ) {
        self.key = key
        self.type = type
        self.niceness = min(max(niceness, 0), 1)
        self.timeoutMs = timeoutMs
        self.serial = serial
        self.phase = phase
        self.lastProgress = now
        self.lastHeard = now
        self.startedAt = now
        self.resendPolicy = resendPolicy
        self.geometry = geometry
        self.requestID = requestID
        self.callback = callback
    }

    var isRequester: Bool { key.initiatedByUs }

    /// Sending data (a request not fully acked, or a reply).
    var isSending: Bool { phase == .sendingRequest || phase == .sendingReply }

    func header(forDatagram number: Int, of message: OutgoingMessage) -> DatagramHeader {
        DatagramHeader(
            kind: .data(messageSize: UInt32(message.bytes.count)), messageType: type,
            isNice: niceness > 0, datagramNumber: UInt32(number),
            isFromInitiator: isRequester, hadError: message.hadError,
            transactionId: key.transactionId)
    }

    func ackHeader(forDatagram number: UInt32, cancel: Bool = false) -> DatagramHeader {
        Self.ackHeader(for: key, datagram: number, cancel: cancel)
    }

    static func ackHeader(for key: TransactionKey, datagram number: UInt32, cancel: Bool) -> DatagramHeader {
        DatagramHeader(
            kind: .ack, isCancel: cancel, datagramNumber: number,
            isFromInitiator: key.initiatedByUs, transactionId: key.transactionId)
    }
}
