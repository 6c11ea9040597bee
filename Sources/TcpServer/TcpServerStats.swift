/// One snapshot of everything the server counts.
public struct TcpServerStats: Sendable, Equatable {
    // Open now.
    /// Accepted connections open.
    public var incomingOpen = 0
    /// Outgoing connections open, idle pooled ones included.
    public var outgoingOpen = 0
    /// Outgoing connections idle in the keep-alive pool (included in `outgoingOpen`).
    public var outgoingIdle = 0
    /// Bytes of incoming requests read and not yet handed over, all connections
    /// together (what `requestBytesBudget` bounds).
    public var requestBytesHeld = 0

    // Connections.
    /// Connections accepted, refused ones included.
    public var accepted = 0
    /// Accepted sockets the loop could not watch (legacy: a descriptor ≥ 1024), closed at once.
    public var refusedDescriptors = 0
    /// Accepted sockets closed at once because every incoming socket was busy at the limit.
    public var refusedAtLimit = 0
    /// Idle or reading sockets closed to make room at the limit (`closeLeastUsed`).
    public var closedLeastUsed = 0
    /// Times accepting stopped because the process was out of descriptors (resumed at the next scan).
    public var acceptPauses = 0
    /// Outgoing connections started.
    public var connectsStarted = 0
    /// Outgoing connections that failed to connect.
    public var connectsFailed = 0
    /// Exchanges sent over a pooled keep-alive connection.
    public var connectionsReused = 0

    // Messages and bytes.
    /// Whole requests handed to `onRequest`.
    public var requestsIn = 0
    /// Replies started with `reply(_:to:thenClose:)`.
    public var repliesOut = 0
    /// Replies for a connection that had closed meanwhile.
    public var repliesDropped = 0
    /// Outgoing exchanges that ended with a whole reply.
    public var exchangesCompleted = 0
    /// Outgoing exchanges that ended with an error.
    public var exchangesFailed = 0
    /// Bytes read, both directions' connections.
    public var bytesIn = 0
    /// Bytes written, both directions' connections.
    public var bytesOut = 0
    /// Times a write would block and the write callback was registered.
    public var writeWaits = 0
    /// Times a connection had served `maxRequestsPerTurn` with more buffered: the rest waited a turn.
    public var turnsYielded = 0

    // Endings.
    /// Sockets ended by `timeoutMs`, `requestDeadlineMs` or the read-rate rule.
    public var timedOut = 0
    /// Keep-alive sockets closed after `idleTimeoutMs` idle.
    public var idleClosed = 0
    /// Messages the framing refused, or that grew past `maxMessageBytes`.
    public var refusedMessages = 0
    /// Connections the peer closed or reset in the middle of a message.
    public var truncated = 0
    /// Connections refused and closed because `requestBytesBudget` was spent.
    public var budgetRefusals = 0

    /// All zero.
    public init() {}

    /// Name and value of every counter, in declaration order (for JSON and reports).
    public var fields: [(String, Int)] {
        [
            ("incomingOpen", incomingOpen), ("outgoingOpen", outgoingOpen), ("outgoingIdle", outgoingIdle),
            ("requestBytesHeld", requestBytesHeld),
            ("accepted", accepted), ("refusedDescriptors", refusedDescriptors), ("refusedAtLimit", refusedAtLimit),
            ("closedLeastUsed", closedLeastUsed), ("acceptPauses", acceptPauses),
            ("connectsStarted", connectsStarted), ("connectsFailed", connectsFailed),
            ("connectionsReused", connectionsReused),
            ("requestsIn", requestsIn), ("repliesOut", repliesOut), ("repliesDropped", repliesDropped),
            ("exchangesCompleted", exchangesCompleted), ("exchangesFailed", exchangesFailed),
            ("bytesIn", bytesIn), ("bytesOut", bytesOut), ("writeWaits", writeWaits), ("turnsYielded", turnsYielded),
            ("timedOut", timedOut), ("idleClosed", idleClosed), ("refusedMessages", refusedMessages),
            ("truncated", truncated), ("budgetRefusals", budgetRefusals),
        ]
    }
}
