import Compat
import Glibc

/// Why an outgoing exchange ended without a reply, or a server could not start.
public enum TcpError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The connection was refused or failed while connecting (its errno).
    case connectFailed(errno: Int32)
    /// No byte moved either way for the exchange's timeout.
    case timedOut
    /// The reply was not whole by the exchange's deadline, however steadily its bytes came.
    case deadlinePassed
    /// The reply came in slower than the minimum read rate (the original's 20 bytes/s after 60 s).
    case tooSlow
    /// The peer closed the connection before the reply was complete.
    case closedByPeer
    /// A send or receive failed (`ECONNRESET`, `EPIPE`, …).
    case transferFailed(errno: Int32)
    /// The reply could not be framed, or grew past `maxMessageBytes`.
    case malformedReply
    /// The server was closed with the exchange still open.
    case shuttingDown
    /// The loop refused the socket (a descriptor past the select loop's limit, or no registration left).
    case refusedByLoop(LoopError)
    /// A system call failed (starting to listen, creating a socket).
    case system(SystemError)

    public var description: String {
        switch self {
        case .connectFailed(let e): return "connect failed: \(String(cString: strerror(e))) (errno \(e))"
        case .timedOut: return "timed out"
        case .deadlinePassed: return "the reply was not whole by the deadline"
        case .tooSlow: return "the reply came in too slowly"
        case .closedByPeer: return "the peer closed the connection before the reply was complete"
        case .transferFailed(let e): return "transfer failed: \(String(cString: strerror(e))) (errno \(e))"
        case .malformedReply: return "malformed or oversized reply"
        case .shuttingDown: return "the server is shutting down"
        case .refusedByLoop(let e): return "the loop refused the socket: \(e)"
        case .system(let e): return e.description
        }
    }
}
