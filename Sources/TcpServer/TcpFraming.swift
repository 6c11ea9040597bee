/// Where one message ends in a byte stream: the protocol's part of the server
/// (the original's `getMsgSize` hook). Asked with everything read so far, from the
/// start of the message; called again as more arrives.
public protocol TcpFraming {
    /// `atEnd`: the peer has closed its sending side, nothing more will come.
    func frame(_ bytes: ArraySlice<UInt8>, atEnd: Bool) -> TcpFrame
    /// What to send before closing a connection whose message grew past the
    /// server's `maxMessageBytes` while still incomplete (empty: just close).
    var oversizedReply: [UInt8] { get }
    /// What to send before closing a connection whose request took too long to arrive.
    var timedOutReply: [UInt8] { get }
}

extension TcpFraming {
    public var oversizedReply: [UInt8] { [] }
    public var timedOutReply: [UInt8] { [] }
}

/// The framing's verdict on the bytes read so far.
public enum TcpFrame: Equatable, Sendable {
    /// More bytes are needed.
    case incomplete
    /// The first `length` bytes are one message. `reusable`: the connection may carry
    /// another message after it (keep-alive); false closes it once this one is answered.
    case complete(length: Int, reusable: Bool)
    /// The bytes can never be a message: send `reply` (may be empty) and close.
    case refused(reply: [UInt8])
}
