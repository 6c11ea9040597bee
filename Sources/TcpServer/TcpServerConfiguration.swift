import Compat

/// The server's limits and timers. The defaults are the original's, where it had one.
public struct TcpServerConfiguration: Sendable {
    /// The listening socket's queue of connections not yet accepted.
    public var listenBacklog: Int32 = 128
    /// Incoming sockets open at once; past it the least used idle one is closed to
    /// make room, or the new one is refused (the original's `MAX_TCP_SOCKS`).
    public var maxIncomingSockets = 15_000
    /// A socket with no byte read or written for this long is ended (60 s).
    public var timeoutMs = 60_000
    /// How often the timeouts are checked (the original's 500 ms `readTimeoutPoll`).
    public var scanIntervalMs = 500
    /// A keep-alive socket with no message under way is closed after this long idle
    /// (the original's `closeLeastUsed(60)` every 30 s).
    public var idleTimeoutMs = 60_000
    /// An incoming message must arrive whole within this long of its first byte: a
    /// client dribbling a byte a second makes progress, but not a request.
    public var requestDeadlineMs = 30_000
    /// The largest message read (request or reply); more is refused and closed.
    public var maxMessageBytes = 1 << 20
    /// An outgoing exchange reading for longer than `minimumRateAfterMs` at under
    /// `minimumReadRate` bytes/s is ended as too slow (the original's read-rate timeout).
    public var minimumReadRate = 20
    /// How long an outgoing exchange may read before `minimumReadRate` applies.
    public var minimumRateAfterMs = 60_000
    /// Requests served from one incoming connection in one turn of the loop; a pipelined
    /// rest waits for the next turn, so one client's batch does not hold up the others.
    public var maxRequestsPerTurn = 16
    /// How far ahead of its replies an incoming connection is read (32 KiB): nothing is read
    /// while a reply is unsent, and a read stops at this many buffered bytes (a message
    /// larger than that goes on growing by a quarter of it a turn). A client that pipelines
    /// and never reads holds at most this plus one reply beyond the kernel's buffers.
    public var maxReadAheadBytes = 32 * 1024
    /// Bytes of incoming requests held across all connections (64 MiB). Past it, the least
    /// used other connection holding some gives way (refused and closed), and when none
    /// can, the connection wanting more is; each counts in `budgetRefusals`.
    public var requestBytesBudget = 64 << 20
    /// The accept callback stops after this long and lets the loop serve others (15 ms).
    public var acceptBudgetMs: Int64 = 15
    /// The niceness of accepted sockets' callbacks (the listener's is 0).
    public var incomingNiceness = 0
    /// Idle keep-alive connections kept per destination for later exchanges.
    public var maxIdleOutgoingPerPeer = 8
    /// Sent to a connection refused at accept (over the limit, or a descriptor the
    /// loop cannot watch) before it is closed; the protocol's "busy" answer.
    public var refusalReply: [UInt8] = []

    /// The defaults: the original's limits and timeouts.
    public init() {}
}
