import Glibc
import Sockets

/// A TCP socket listening on 127.0.0.1 at a free port, for the tests' own servers (origins
/// for the client, peers that misbehave). Fails loudly: a test cannot go on without it.
public func loopbackListener(nonBlocking: Bool, backlog: Int32) -> (fd: Int32, port: UInt16) {
    let flags =
        Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
    let fd = socket(AF_INET, flags, 0)
    precondition(fd >= 0, "socket: errno \(errno)")
    var address = PeerAddress.loopback(port: 0).socketAddress
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            precondition(bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0, "bind: errno \(errno)")
        }
    }
    precondition(Glibc.listen(fd, backlog) == 0, "listen: errno \(errno)")
    return (fd, UInt16(bigEndian: address.sin_port))
}
