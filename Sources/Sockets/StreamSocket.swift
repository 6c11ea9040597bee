import CLoopShim
import Glibc
import LoopCore

/// The TCP system calls the server makes, non-blocking, with errno turned into
/// values. Closing is the owner's job (through the loop, so that no event of the
/// current batch reaches a reused number).
package enum StreamSocket {
    package enum AcceptOutcome {
        case accepted(fd: Int32, peer: PeerAddress)
        case wouldBlock
        /// `EMFILE`/`ENFILE`: the connection stays queued until a descriptor is free.
        case outOfDescriptors(errno: Int32)
        /// Anything else: one connection's (`ECONNABORTED`: the peer gave up while queued), or the listener's own.
        case failed(errno: Int32)
    }

    package enum ConnectOutcome {
        case connected(fd: Int32)
        /// `EINPROGRESS`: writability says when it is done; `SO_ERROR` says how.
        case inProgress(fd: Int32)
    }

    package enum TransferOutcome: Equatable {
        case transferred(Int)
        case wouldBlock
        /// The peer closed its sending side (reads only).
        case endOfStream
        case failed(errno: Int32)
    }

    /// A listening socket on `address`. `SO_REUSEADDR` lets a restarted node bind
    /// while its old connections sit in TIME_WAIT; on Linux it does not let a second
    /// live listener share the port (that is `SO_REUSEPORT`), so a port in use is
    /// still `EADDRINUSE`.
    package static func listen(on address: PeerAddress, backlog: Int32) throws(SystemError) -> (
        fd: Int32, bound: PeerAddress
    ) {
        let fd = try newSocket()
        do {
            var one: Int32 = 1
            _ = try systemCall("setsockopt(SO_REUSEADDR)") {
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            let bound = try address.bind(fd)
            _ = try systemCall("listen") { Glibc.listen(fd, backlog) }
            return (fd, bound)
        } catch {
            closeDescriptor(fd)
            throw error
        }
    }

    package static func accept(_ listener: Int32) -> AcceptOutcome {
        var peer = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        while true {
            let fd = withUnsafeMutablePointer(to: &peer) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    shim_accept4(listener, $0, &length, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
                }
            }
            if fd >= 0 { return .accepted(fd: fd, peer: PeerAddress(peer)) }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            case EMFILE, ENFILE: return .outOfDescriptors(errno: errno)
            case let e: return .failed(errno: e)
            }
        }
    }

    /// The errors accept(2) returns for one queued connection (the peer gave up, or the
    /// network errors Linux passes on from the new socket): the next one may well succeed.
    package static func isPerConnectionAcceptError(_ e: Int32) -> Bool {
        [ECONNABORTED, EPROTO, EPERM, ENETDOWN, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH]
            .contains(e)
    }

    /// Starts a connection to `address`. Throws when it fails at once (a refused
    /// loopback connection usually does, `ECONNREFUSED`).
    package static func connect(to address: PeerAddress) throws(SystemError) -> ConnectOutcome {
        let fd = try newSocket()
        var destination = address.socketAddress
        let result = withUnsafePointer(to: &destination) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if result == 0 { return .connected(fd: fd) }
        // EINTR on a non-blocking connect: the connection goes on in the background, like EINPROGRESS.
        let err = errno
        if err == EINPROGRESS || err == EINTR { return .inProgress(fd: fd) }
        closeDescriptor(fd)
        throw SystemError("connect(\(address))", errno: err)
    }

    /// The outcome of a non-blocking connect, once the socket is writable: 0 or its errno.
    package static func pendingError(_ fd: Int32) -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &value, &length) == 0 else { return errno }
        return value
    }

    package static func receive(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> TransferOutcome {
        while true {
            let n = recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
            if n > 0 { return .transferred(n) }
            if n == 0 { return .endOfStream }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            case let e: return .failed(errno: e)
            }
        }
    }

    /// `MSG_NOSIGNAL`: a peer that has gone away is `EPIPE`, not a SIGPIPE for the process.
    package static func send(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> TransferOutcome {
        while true {
            let n = Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
            if n >= 0 { return .transferred(n) }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            case let e: return .failed(errno: e)
            }
        }
    }

    private static func newSocket() throws(SystemError) -> Int32 {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        return try systemCall("socket") { socket(AF_INET, type, 0) }
    }
}
