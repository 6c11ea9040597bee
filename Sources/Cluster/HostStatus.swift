/// What one node knows of one host from its pings: the row of the hosts table.
///
/// Liveness is decided by age: a host is alive while its last ping reply is
/// younger than the dead-host timeout, dead from then on, and dead at once on its
/// going-down note. Every host starts dead, as in the original, until it first answers.
public struct HostStatus: Sendable {
    /// The host this row is about.
    public let host: ClusterHost
    /// The node's own row: always alive, never pinged (the original's `isDead` is false for `m_myHost`).
    public let isSelf: Bool
    /// Whether the host counts as alive now (see above).
    public internal(set) var alive: Bool
    /// Round-trip time of the last answered ping, ms.
    public internal(set) var rttMs: Double?
    /// Loop time of the last ping reply (or of the note that it is going down, which also is news from it).
    public internal(set) var lastSeenAt: Int64?
    /// What the host said of itself in its last reply.
    public internal(set) var info: PingInfo?
    /// Pings sent to it.
    public internal(set) var pingsSent = 0
    /// Ping replies from it.
    public internal(set) var pingReplies = 0
    /// Pings to it that timed out.
    public internal(set) var pingTimeouts = 0
    /// Pings that ended with another error (an error reply, no slots).
    public internal(set) var pingErrors = 0
    /// Alive → dead transitions.
    public internal(set) var deaths = 0
    /// Going-down notes it sent us.
    public internal(set) var goingDownNotes = 0

    /// Loop time of the last reply that counts for liveness (nil after a going-down note).
    public internal(set) var lastReplyAt: Int64?
    /// Loop time of the last going-down note: replies to pings sent before it do not count.
    var notedDownAt: Int64?
    /// Loop time of the last ping this host sent us (from its own address): it counts on us.
    var pingedUsAt: Int64?
    var everAlive = false
    var deadSince: Int64?
    var downMsBefore: Int64 = 0
    /// The ping in flight, if any, and when it was sent: one at a time per host.
    var pingInFlight: (id: UInt64, sentAt: Int64, sentNs: Int64)?

    init(host: ClusterHost, isSelf: Bool) {
        self.host = host
        self.isSelf = isSelf
        self.alive = isSelf
    }

    /// How long the host has been dead since it was first seen alive, all stretches together, ms.
    public func downMs(now: Int64) -> Int64 {
        downMsBefore + (deadSince.map { max(0, now - $0) } ?? 0)
    }

    /// How long ago it was last heard from, ms; nil if never.
    public func lastSeenMsAgo(now: Int64) -> Int64? { lastSeenAt.map { max(0, now - $0) } }

    /// Applies the liveness rule at `now`; returns whether `alive` changed.
    mutating func refresh(now: Int64, deadAfterMs: Int64) -> Bool {
        guard !isSelf else { return false }
        let answering = lastReplyAt.map { now - $0 < deadAfterMs } ?? false
        guard answering != alive else { return false }
        alive = answering
        if answering {
            if let deadSince { downMsBefore += max(0, now - deadSince) }
            deadSince = nil
            everAlive = true
        } else {
            deaths += 1
            deadSince = now
        }
        return true
    }
}
