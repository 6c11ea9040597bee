import Sockets

/// An IPv4 address and port: what the servers on the loop name their peers and their
/// own sockets by. It lives with the socket code; `import Compat` keeps reaching it.
public typealias PeerAddress = Sockets.PeerAddress
