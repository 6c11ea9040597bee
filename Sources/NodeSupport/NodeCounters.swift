/// What a node counts beyond its loop and server.
public struct NodeCounters: Equatable, Sendable {
    /// Admin requests from peers outside `TrustedPeers`, answered with EPERM.
    public var adminRefused = 0
    /// Save-and-exit requests whose save failed (answered with the errno; the node keeps serving).
    public var savesFailed = 0

    public init() {}

    public var fields: [(String, Int)] { [("adminRefused", adminRefused), ("savesFailed", savesFailed)] }
}
