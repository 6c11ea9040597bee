/// What identifies a transaction at one end: the id, the peer, and which side started it.
/// The receiver of a datagram flips the datagram's initiator bit to find its own side.
struct TransactionKey: Hashable, Sendable {
    var transactionId: UInt32
    var peer: PeerAddress
    var initiatedByUs: Bool

    /// The key of our transaction a received datagram belongs to.
    init(receivedHeader header: DatagramHeader, from peer: PeerAddress) {
        self.init(transactionId: header.transactionId, peer: peer, initiatedByUs: !header.isFromInitiator)
    }

    init(transactionId: UInt32, peer: PeerAddress, initiatedByUs: Bool) {
        self.transactionId = transactionId
        self.peer = peer
        self.initiatedByUs = initiatedByUs
    }
}
