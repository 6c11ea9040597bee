import Glibc
import Sockets

/// The server's tunables; the defaults are the original's numbers unless noted.
///
/// Not `Sendable`: it may carry a stateful `DatagramFilter`, and the server lives
/// on its loop's thread anyway.
public struct UdpServerConfiguration {
    /// 0 picks an ephemeral port; read the bound one back from `UdpServer.port`.
    public var port: UInt16 = 0
    /// Loopback unless told otherwise.
    public var bindAddress = "127.0.0.1"
    /// Bytes per datagram, header included, to and from every peer that is not one of the
    /// server's own addresses: the original's `DGRAM_SIZE`, 1462 (a LAN frame), by default;
    /// at most 65507. Both ends must agree: each applies the rule to the other's address.
    public var datagramSize = DatagramGeometry.lanDatagramSize
    /// Bytes per datagram to and from the server's own addresses (`ownAddresses`, and
    /// `bindAddress` when it names one address): the original's `DGRAM_SIZE_LB`, 16400,
    /// which it uses where `Hostdb::isMyIp` holds. nil: `datagramSize` to every peer alike.
    public var ownAddressDatagramSize: Int? = DatagramGeometry.loopbackDatagramSize
    /// The server's own addresses besides the bind address (dotted quads): 127.0.0.1 by
    /// default, which the original's `isMyIp` counts always; a cluster member adds its
    /// hosts-file addresses, as `isMyIp` holds for its own IP and its second (shotgun) IP.
    /// (A test peer at another 127/8 address that stands for another host leaves 127.0.0.1 out.)
    public var ownAddresses: [String] = ["127.0.0.1"]
    /// The largest message sent or received. Lower it in tests.
    public var maxMessageSize = DatagramGeometry.defaultMaxMessageSize
    /// Period of the resend/timeout scan (the original's `pollTime`).
    public var pollTimeMs = 20
    /// Transactions in progress, both directions together.
    public var maxSlots = 3500
    /// Of `maxSlots`, how many incoming requests may never take (at most a quarter of them).
    public var reservedOutgoingSlots = 64
    /// `SO_RCVBUF`/`SO_SNDBUF` (the kernel caps them at `rmem_max`/`wmem_max`).
    public var receiveBufferSize = 4 * 1024 * 1024
    /// `SO_SNDBUF`, as `receiveBufferSize`.
    public var sendBufferSize = 4 * 1024 * 1024
    /// Unacknowledged datagrams a transaction may have in flight (`ACK_WINDOW_SIZE`).
    public var ackWindow = 4
    /// No progress for this long ends a transaction we did not start.
    public var incomingTimeoutMs = 60_000
    /// Caps the memory promised to messages being received, so lies about message
    /// sizes cannot make the server allocate without bound. Datagrams that would
    /// need more are dropped (the sender resends later).
    public var maxBufferedIncomingBytes = 1024 * 1024 * 1024
    /// The most incoming slots one peer address may hold; nil: a quarter of those
    /// incoming requests may take. Keeps one flooding address from taking them all.
    public var maxIncomingSlotsPerPeer: Int? = nil
    /// The most of `maxBufferedIncomingBytes` one peer address may hold; nil: half,
    /// so that one largest message still fits.
    public var maxBufferedBytesPerPeer: Int? = nil
    /// A partial incoming request that made no progress for this long gives way
    /// (is evicted, its sender told with a cancel ACK) when another needs its room.
    public var stalledAfterMs = 1_000
    /// A partial incoming request that, at the rate its datagrams came so far, would take
    /// longer than this in all gives way too: one datagram a second towards a 291 MB
    /// message is progress only in name.
    public var maximumTransferMs = 600_000
    /// A reply to an address that never acknowledged anything is resent (after its first
    /// resend) only when the requester asks again, or while everything sent for it stays
    /// within this many times the bytes that address sent, so a forged source gains at
    /// most this factor, or one reply datagram per datagram it sends.
    public var unacknowledgedReplyFactor = 3
    /// A reply held back from such an address is given up after this long without a word
    /// from it (a real requester asks again well within it: after 2x its resend time,
    /// doubling).
    public var strangerReplyHoldMs = 5_000
    /// A request whose datagrams are all acknowledged but whose reply has not begun
    /// is sent again, whole, after this long without a datagram from the peer (the
    /// original's `readTimeoutPoll`): a peer that restarted meanwhile gets it anew.
    /// Before that, its last datagram is sent again now and then to ask for the reply.
    public var requestResendAfterMs = 30_000
    /// Where the server says, at most once per `dropLogIntervalMs`, what it dropped
    /// and why; nil for silence. Standard error by default.
    public var log: ((String) -> Void)? = { line in
        let text = Array((line + "\n").utf8)
        _ = text.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }
    /// The least time between two log lines about dropped datagrams; the drops in between are summed.
    public var dropLogIntervalMs = 5_000
    /// Datagrams read per read callback before yielding back to the loop.
    public var maxDatagramsPerRead = 256
    /// The most datagrams one `recvmmsg` reads or one `sendmmsg` sends (1...256). Each
    /// costs a datagram's worth of buffer both ways; 1 is the original's one per call.
    public var datagramsPerSystemCall = 32
    /// How long a finished incoming transaction is remembered, so a late duplicate
    /// of its request does not run the handler a second time.
    public var finishedMemoryMs = 10_000
    /// Seeds the resend jitter and the first transaction id; nil takes the clock.
    public var randomSeed: UInt64? = nil
    /// Whom the server answers: nil answers everyone; otherwise every datagram from an
    /// address the rule does not admit is dropped unread (counted in `unauthorized`), as the
    /// original drops anything not from its hosts.conf, local networks or admin IPs. Its
    /// members' replies are resent without the reflection bound (`unacknowledgedReplyFactor`).
    public var admission: UdpAdmission? = nil
    /// Sees every outgoing datagram before the socket does: the loss injector of the tests.
    package var datagramFilter: (any DatagramFilter)? = nil

    /// The defaults: the original's rule (16400-byte datagrams to this host's own addresses,
    /// 1462 to every other), any free port on 127.0.0.1.
    public init() {}

    /// The configuration for peers that are all on this host (any 127/8 address): 16400-byte
    /// datagrams to every peer.
    public static var loopback: UdpServerConfiguration {
        var c = UdpServerConfiguration()
        c.datagramSize = DatagramGeometry.loopbackDatagramSize
        return c
    }

    /// The datagram geometries (every other peer's, the own addresses'), and the own addresses.
    func validated() throws(ConfigurationError) -> (
        other: DatagramGeometry, own: DatagramGeometry, ownIPs: [UInt32]
    ) {
        let geometry = try DatagramGeometry(datagramSize: datagramSize, maxMessageSize: maxMessageSize)
        var own = geometry
        if let ownAddressDatagramSize {
            guard ownAddressDatagramSize > DatagramHeader.dataHeaderSize,
                ownAddressDatagramSize <= DatagramGeometry.largestDatagramSize
            else { throw .ownAddressDatagramSize(ownAddressDatagramSize) }
            own = try DatagramGeometry(datagramSize: ownAddressDatagramSize, maxMessageSize: maxMessageSize)
        }
        var ownIPs: [UInt32] = []
        for text in ownAddresses {
            guard let ip = PeerAddress.parseIPv4(text) else { throw .ownAddress(text) }
            if !ownIPs.contains(ip) { ownIPs.append(ip) }
        }
        // 0.0.0.0 is every address and none of them; an unparsable one is reported by `start()`.
        if let ip = PeerAddress.parseIPv4(bindAddress), ip != 0, !ownIPs.contains(ip) { ownIPs.append(ip) }
        guard pollTimeMs >= 1 else { throw .pollTime(pollTimeMs) }
        guard maxSlots >= 1 else { throw .maxSlots(maxSlots) }
        guard ackWindow >= 1 else { throw .ackWindow(ackWindow) }
        guard incomingTimeoutMs >= 1 else { throw .timeout(incomingTimeoutMs) }
        guard maxDatagramsPerRead >= 1 else { throw .maxDatagramsPerRead(maxDatagramsPerRead) }
        guard (1...DatagramSocket.maxDatagramsPerCall).contains(datagramsPerSystemCall) else {
            throw .datagramsPerSystemCall(datagramsPerSystemCall)
        }
        guard receiveBufferSize > 0, sendBufferSize > 0 else {
            throw .bufferSize(min(receiveBufferSize, sendBufferSize))
        }
        guard maxBufferedIncomingBytes >= 0 else { throw .maxBufferedIncomingBytes(maxBufferedIncomingBytes) }
        if let n = maxIncomingSlotsPerPeer, n < 1 { throw .maxIncomingSlotsPerPeer(n) }
        if let n = maxBufferedBytesPerPeer, n < 0 { throw .maxBufferedBytesPerPeer(n) }
        guard stalledAfterMs >= 0 else { throw .stalledAfter(stalledAfterMs) }
        guard maximumTransferMs >= 1 else { throw .maximumTransfer(maximumTransferMs) }
        guard unacknowledgedReplyFactor >= 1 else { throw .unacknowledgedReplyFactor(unacknowledgedReplyFactor) }
        guard strangerReplyHoldMs >= 0 else { throw .strangerReplyHold(strangerReplyHoldMs) }
        guard requestResendAfterMs >= 1 else { throw .requestResendAfter(requestResendAfterMs) }
        guard dropLogIntervalMs >= 1 else { throw .dropLogInterval(dropLogIntervalMs) }
        return (geometry, own, ownIPs)
    }
}

/// A configuration value out of range.
public enum ConfigurationError: Error, Hashable, Sendable {
    /// Must be above the 12-byte header and at most 65507.
    case datagramSize(Int)
    /// `ownAddressDatagramSize`, when set: above the 12-byte header and at most 65507.
    case ownAddressDatagramSize(Int)
    /// An entry of `ownAddresses` that is not a dotted-quad IPv4 address.
    case ownAddress(String)
    /// Must fit the 32-bit size word, and its datagram count the 21-bit number.
    case maxMessageSize(Int)
    /// `pollTimeMs` must be at least 1.
    case pollTime(Int)
    /// `maxSlots` must be at least 1.
    case maxSlots(Int)
    /// `ackWindow` must be at least 1.
    case ackWindow(Int)
    /// `incomingTimeoutMs` must be at least 1.
    case timeout(Int)
    /// `maxDatagramsPerRead` must be at least 1.
    case maxDatagramsPerRead(Int)
    /// Must be within 1...256.
    case datagramsPerSystemCall(Int)
    /// The socket buffer sizes must be positive (the smaller one given).
    case bufferSize(Int)
    /// `maxBufferedIncomingBytes` must not be negative.
    case maxBufferedIncomingBytes(Int)
    /// `maxIncomingSlotsPerPeer`, when set, must be at least 1.
    case maxIncomingSlotsPerPeer(Int)
    /// `maxBufferedBytesPerPeer`, when set, must not be negative.
    case maxBufferedBytesPerPeer(Int)
    /// `stalledAfterMs` must not be negative.
    case stalledAfter(Int)
    /// `maximumTransferMs` must be at least 1.
    case maximumTransfer(Int)
    /// `unacknowledgedReplyFactor` must be at least 1.
    case unacknowledgedReplyFactor(Int)
    /// `strangerReplyHoldMs` must not be negative.
    case strangerReplyHold(Int)
    /// `requestResendAfterMs` must be at least 1.
    case requestResendAfter(Int)
    /// `dropLogIntervalMs` must be at least 1.
    case dropLogInterval(Int)
}
