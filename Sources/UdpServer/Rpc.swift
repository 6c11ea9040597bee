import Glibc

/// How a request ended when it did not get a reply.
public enum RpcError: Error, Hashable, Sendable, CustomStringConvertible {
    /// No progress for the request's timeout (the original's `EUDPTIMEDOUT`).
    case timedOut
    /// The peer answered with an error reply carrying this errno.
    case remote(errno: Int32)
    /// `cancel` ended it (`ECANCELLED`).
    case cancelled
    /// Every slot was in use (`ENOSLOTS`).
    case noSlots
    /// The server is shutting down (`ESHUTTINGDOWN`).
    case shuttingDown
    /// The request is larger than the configured maximum; nothing was sent.
    case messageTooLarge(size: Int, limit: Int)
    /// The peer sent a cancel ACK: it has no such transaction.
    case rejectedByPeer

    public var description: String {
        switch self {
        case .timedOut: return "timed out"
        case .remote(let errno): return "remote error \(errno) (\(String(cString: strerror(errno))))"
        case .cancelled: return "cancelled"
        case .noSlots: return "no free slots"
        case .shuttingDown: return "shutting down"
        case .messageTooLarge(let size, let limit): return "message of \(size) bytes exceeds the limit \(limit)"
        case .rejectedByPeer: return "rejected by the peer"
        }
    }
}

/// A request's outcome: the reply's bytes, or why there is none.
public typealias RpcResult = Result<[UInt8], RpcError>

/// Identifies a request sent with `sendRequest`, for `cancel`.
public struct RequestHandle: Hashable, Sendable, CustomStringConvertible {
    /// A number unique among this server's requests.
    public let id: UInt64
    public var description: String { "request#\(id)" }
}

/// A whole request, as a handler receives it. Answer it with `sendReply` or `sendErrorReply`.
public struct IncomingRequest: Sendable {
    /// The message type the requester sent it as (the handler registered for it runs).
    public let type: UInt8
    /// The request's bytes, whole.
    public let payload: [UInt8]
    /// The requester's address, where the reply goes.
    public let peer: PeerAddress
    /// 0 if the requester sent it at niceness 0, else 1.
    public let niceness: Int
    /// The requester's transaction number, unique per requester while the request is open.
    public let transactionId: UInt32
    let key: TransactionKey
    let serial: UInt64
}

/// Why a reply could not be sent.
public enum ReplyError: Error, Hashable, Sendable {
    /// The request was already answered, timed out, or dropped by an urgent shutdown.
    case notPending
    /// The reply is larger than the configured maximum; the request stays open.
    case messageTooLarge(size: Int, limit: Int)
}

/// Errnos this server puts in its own error replies.
public enum RemoteErrno {
    /// No handler is registered for the request's type.
    public static let noHandler: Int32 = ENOSYS
    /// The error reply's content was too short to hold an errno.
    public static let malformed: Int32 = EPROTO
}
