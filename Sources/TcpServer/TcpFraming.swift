/// Where one message ends in a byte stream: the protocol's part of the server
/// (the original's `getMsgSize` hook). Asked with everything read so far, from the
/// start of the message; called again as more arrives.
public protocol TcpFraming {
    /// `atEnd`: the peer has closed its sending side, nothing more will come.
    func frame(_ bytes: ArraySlice<UInt8>, atEnd: Bool) -> TcpFrame
    /// The same for the message at the start of `connection`'s buffer, which is what it was
    /// at the last call for `connection` and more, until a verdict other than `.incomplete`
    /// (the server then consumes the message or closes the connection). A framing may keep
    /// what it learned of an incomplete message so as not to examine it again from its first
    /// byte at every read. By default, `frame(_:atEnd:)`.
    func frame(_ bytes: ArraySlice<UInt8>, atEnd: Bool, of connection: TcpConnectionID) -> TcpFrame
    /// `connection` is closed: whatever the framing kept for it goes.
    func connectionClosed(_ connection: TcpConnectionID)
    /// What to send before closing a connection whose message grew past the
    /// server's `maxMessageBytes` while still incomplete (empty: just close).
    var oversizedReply: [UInt8] { get }
    /// What to send before closing a connection whose request took too long to arrive.
    var timedOutReply: [UInt8] { get }
}

extension TcpFraming {
    /// Frames afresh: a framing that keeps nothing between reads.
    public func frame(_ bytes: ArraySlice<UInt8>, atEnd: Bool, of connection: TcpConnectionID) -> TcpFrame {
        frame(bytes, atEnd: atEnd)
    }
    /// Nothing kept, nothing to forget.
    public func connectionClosed(_ connection: TcpConnectionID) {}
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
