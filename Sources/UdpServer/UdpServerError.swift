/// Why `UdpServer.start()` failed.
public enum UdpServerError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A configuration value out of range.
    case configuration(ConfigurationError)
    /// `bindAddress` is not a dotted-quad IPv4 address.
    case invalidBindAddress(String)
    /// Another socket (another node?) is bound to this address and port.
    case addressInUse(String)
    /// A system call on the socket failed (creating, sizing or binding it).
    case system(SystemError)
    /// The loop refused to watch the socket or to run the server's timers.
    case loop(LoopError)
    /// `start()` was called before.
    case alreadyStarted

    public var description: String {
        switch self {
        case .configuration(let e): return "invalid configuration: \(e)"
        case .invalidBindAddress(let a): return "invalid bind address \(a)"
        case .addressInUse(let a): return "\(a) is already in use (is another node running there?)"
        case .system(let e): return e.description
        case .loop(let e): return e.description
        case .alreadyStarted: return "the server was already started"
        }
    }
}
