import Compat

/// Names one connection for the life of the server: a descriptor number is
/// reused once closed, an id never is. A reply names the request's connection by it.
public struct TcpConnectionID: Hashable, Sendable, CustomStringConvertible {
    let value: UInt64
    public var description: String { "tcp#\(value)" }
}

/// One socket the server owns, incoming or outgoing, and where its message stands.
final class TcpConnection {
    enum State: Equatable {
        /// Outgoing: the non-blocking connect is under way (write callback registered).
        case connecting
        /// Reading a message (read callback registered unless the peer closed its side).
        case reading
        /// Incoming: a whole request is with the handler; nothing is read or written.
        case handling
        /// Writing a message; the write callback is registered only while the socket would block.
        case writing
        /// Outgoing: kept for a later exchange to the same peer (read callback registered to see it close).
        case pooled
        case closed
    }

    let id: TcpConnectionID
    let fd: Int32
    let peer: PeerAddress
    let isIncoming: Bool
    var niceness: Int
    var state: State
    /// Bytes read and not yet framed into a message (a pipelined next request stays here).
    var received: [UInt8] = []
    var pending: [UInt8] = []
    var pendingOffset = 0
    /// Close once `pending` is written (the framing said the connection is not reusable).
    var closeAfterWrite = false
    /// The peer closed its sending side: frame what is left, read no more.
    var peerClosed = false
    /// In the server's list of connections whose buffered requests wait for the next turn.
    var awaitingTurn = false
    /// Guards `serveBuffered` against re-entry from a handler that replies at once.
    var framingInProgress = false
    let openedAt: Int64
    /// Last time a byte moved either way (the original's `m_lastActionTime`).
    var lastAction: Int64
    /// When the message being read began (its first byte), for `requestDeadlineMs`.
    var messageStartedAt: Int64?
    /// Bytes read for the current exchange (the read-rate rule).
    var exchangeBytesIn = 0
    var readRegistration: Registration?
    var writeRegistration: Registration?
    /// Outgoing only: the exchange the connection carries now.
    var exchange: OutgoingExchange?

    init(id: TcpConnectionID, fd: Int32, peer: PeerAddress, isIncoming: Bool, niceness: Int, state: State, now: Int64) {
        self.id = id
        self.fd = fd
        self.peer = peer
        self.isIncoming = isIncoming
        self.niceness = niceness
        self.state = state
        self.openedAt = now
        self.lastAction = now
    }

    var isOpen: Bool { state != .closed }
    /// What the server holds for this connection: requests read and not yet handed
    /// over, and the unsent rest of the message being written.
    var heldBytes: Int { received.count + pending.count - pendingOffset }
    /// An incoming socket that is only waiting for a request: what `closeLeastUsed` may take.
    var isIdleOrReading: Bool { isIncoming && state == .reading }
}

/// An outgoing request and what to do with its reply.
final class OutgoingExchange {
    let request: [UInt8]
    let framing: any TcpFraming
    let timeoutMs: Int64
    let startedAt: Int64
    /// When the exchange ends with `.deadlinePassed` if it has not ended before (loop clock, ms).
    var deadline: Int64?
    /// Sent over a pooled connection: if it fails before any reply byte, the peer may
    /// have closed the idle connection meanwhile, and the exchange is tried once afresh.
    let overPooledConnection: Bool
    private var completion: ((Result<[UInt8], TcpError>) -> Void)?

    init(
        request: [UInt8], framing: any TcpFraming, timeoutMs: Int64, startedAt: Int64, overPooledConnection: Bool,
        completion: @escaping (Result<[UInt8], TcpError>) -> Void
    ) {
        self.request = request
        self.framing = framing
        self.timeoutMs = timeoutMs
        self.startedAt = startedAt
        self.overPooledConnection = overPooledConnection
        self.completion = completion
    }

    /// Calls the completion the first time only: every exchange ends exactly once.
    func finish(_ result: Result<[UInt8], TcpError>) {
        guard let completion else { return }
        self.completion = nil
        completion(result)
    }

    /// The completion, taken away (to run it under a fresh exchange on a retry).
    func takeCompletion() -> ((Result<[UInt8], TcpError>) -> Void)? {
        defer { completion = nil }
        return completion
    }
}
