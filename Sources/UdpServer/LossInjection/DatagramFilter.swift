/// What happens to one outgoing datagram.
package enum DatagramFate: Hashable, Sendable {
    case deliver
    /// Lost on the way: the server believes it was sent.
    case drop
    /// Sent twice.
    case duplicate
    /// Held back and sent after the next datagram (or at the next timer scan): a reordering.
    case delay
    /// The socket "would block": the server sees `EAGAIN` and must wait for writability.
    case wouldBlock
}

/// An outgoing datagram as a filter sees it.
package struct OutgoingDatagram: Sendable {
    package let header: DatagramHeader
    /// Header included.
    package let size: Int
    package let destination: PeerAddress
    /// The second copy of a datagram the filter duplicated. Only `.wouldBlock` means
    /// anything for it: the socket refuses the copy (any other fate sends it).
    package var isSecondCopy = false
}

/// Decides the fate of each outgoing datagram, between the server and its socket.
/// Called on the loop thread only.
package protocol DatagramFilter: AnyObject {
    func fate(of datagram: OutgoingDatagram) -> DatagramFate
}
