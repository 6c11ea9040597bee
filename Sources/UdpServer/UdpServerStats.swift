/// One snapshot of everything the server counts.
public struct UdpServerStats: Sendable, Equatable, CustomStringConvertible {
    // Slots in use now.
    /// Requests sent and not yet finished.
    public var outgoingSlots = 0
    /// Incoming transactions open: a request arriving, at its handler, or its reply leaving.
    public var incomingSlots = 0

    // Traffic, every datagram (ACKs included) that reached or left the socket.
    /// Datagrams read.
    public var datagramsIn = 0
    /// Bytes read, headers included.
    public var bytesIn = 0
    /// Datagrams sent.
    public var datagramsOut = 0
    /// Bytes sent, headers included.
    public var bytesOut = 0
    /// ACKs read.
    public var acksIn = 0
    /// ACKs sent.
    public var acksOut = 0
    /// ACKs read that cancel a request.
    public var cancelAcksIn = 0
    /// ACKs sent that cancel a request.
    public var cancelAcksOut = 0
    /// Datagrams sent again because their ACK did not come in time.
    public var resends = 0

    // Transactions.
    /// Requests started with `sendRequest`.
    public var requestsSent = 0
    /// Request callbacks run, whatever the outcome.
    public var requestsCompleted = 0
    /// Handlers run with a whole request.
    public var handlerCalls = 0
    /// Replies started with `sendReply`.
    public var repliesSent = 0
    /// Error replies started with `sendErrorReply`.
    public var errorRepliesSent = 0
    /// Requests a handler ended without a reply (`discardRequest`): their requesters time out.
    public var requestsDiscarded = 0
    /// Transactions ended for lack of progress, both directions.
    public var timeouts = 0
    /// `sendRequest` calls ended at once because every slot was taken.
    public var noSlotRequests = 0
    /// Requests of a type with no handler (answered with `RemoteErrno.noHandler`).
    public var unhandledRequests = 0

    // Incoming datagrams discarded, by reason.
    /// Failed to decode, or disagreed with earlier datagrams of their message.
    public var corrupt = 0
    /// Already had it: re-acknowledged and dropped.
    public var duplicates = 0
    /// ACKs for no transaction, or for nothing the transaction sent.
    public var strayAcks = 0
    /// Reply datagrams for no transaction (each answered with a cancel ACK).
    public var strayReplies = 0
    /// New requests dropped because every slot was taken.
    public var noSlotDrops = 0
    /// New requests dropped while shutting down.
    public var shutdownDrops = 0
    /// Messages refused (with a cancel ACK) because their buffer would exceed
    /// `maxBufferedIncomingBytes` or the limit on message size.
    public var memoryDrops = 0
    /// New requests refused because their peer address holds its share of incoming
    /// slots or bytes (counted here, not in `noSlotDrops`/`memoryDrops`).
    public var peerShareDrops = 0
    /// Late copies of a finished request: re-acknowledged, not served again.
    public var lateDuplicates = 0
    /// Datagrams from an address the admission rule does not admit (neither member, local
    /// network nor admin): dropped unread, as the original's "unauthorized udp packet".
    public var unauthorized = 0

    // Pressure and reflection.
    /// Partial requests that made no progress, evicted to make room for another.
    public var evictions = 0
    /// Replies to peers that never acknowledged anything, given up at the resend bound.
    public var repliesAbandoned = 0
    /// Whole requests sent again after `requestResendAfterMs` without a reply.
    public var requestsResent = 0
    /// Last request datagrams sent again to ask for a late reply.
    public var replyPokes = 0

    // The socket and the loop.
    /// System calls that read datagrams (`recvmmsg`, several a call) and that sent them
    /// (`sendmmsg`, and `sendto` for datagrams a filter held back).
    public var receiveSystemCalls = 0
    /// System calls that sent datagrams.
    public var sendSystemCalls = 0
    /// Sends refused with `EAGAIN` (real or injected).
    public var sendsBlocked = 0
    /// Sends that failed otherwise (treated as lost on the wire, as the original does).
    public var sendErrors = 0
    /// Reads that failed with an error other than `EAGAIN`.
    public var receiveErrors = 0
    /// Times a write callback was registered because a send would block.
    public var writeCallbacksRegistered = 0
    /// Times background callbacks were held back because the loop was in quickpoll.
    public var callbacksHeldBack = 0

    /// All zero.
    public init() {}

    /// Incoming datagrams discarded for any reason.
    public var dropped: Int {
        corrupt + duplicates + strayAcks + strayReplies + noSlotDrops + shutdownDrops + memoryDrops
            + peerShareDrops + lateDuplicates + unauthorized
    }

    /// Name/value pairs in a fixed order, for tables and logs.
    public var fields: [(String, Int)] {
        [
            ("outgoingSlots", outgoingSlots), ("incomingSlots", incomingSlots),
            ("datagramsIn", datagramsIn), ("bytesIn", bytesIn), ("datagramsOut", datagramsOut),
            ("bytesOut", bytesOut), ("acksIn", acksIn), ("acksOut", acksOut),
            ("cancelAcksIn", cancelAcksIn), ("cancelAcksOut", cancelAcksOut), ("resends", resends),
            ("requestsSent", requestsSent), ("requestsCompleted", requestsCompleted),
            ("handlerCalls", handlerCalls), ("repliesSent", repliesSent), ("errorRepliesSent", errorRepliesSent),
            ("requestsDiscarded", requestsDiscarded),
            ("timeouts", timeouts), ("noSlotRequests", noSlotRequests), ("unhandledRequests", unhandledRequests),
            ("corrupt", corrupt), ("duplicates", duplicates), ("strayAcks", strayAcks),
            ("strayReplies", strayReplies), ("noSlotDrops", noSlotDrops), ("shutdownDrops", shutdownDrops),
            ("memoryDrops", memoryDrops), ("peerShareDrops", peerShareDrops), ("lateDuplicates", lateDuplicates),
            ("unauthorized", unauthorized),
            ("dropped", dropped), ("evictions", evictions), ("repliesAbandoned", repliesAbandoned),
            ("requestsResent", requestsResent), ("replyPokes", replyPokes),
            ("receiveSystemCalls", receiveSystemCalls), ("sendSystemCalls", sendSystemCalls),
            ("sendsBlocked", sendsBlocked),
            ("sendErrors", sendErrors), ("receiveErrors", receiveErrors),
            ("writeCallbacksRegistered", writeCallbacksRegistered), ("callbacksHeldBack", callbacksHeldBack),
        ]
    }

    public var description: String {
        fields.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
    }
}
