import CLoopShim
import Glibc
import LoopCore

/// The server's UDP socket: bind, send and receive (several datagrams a system call)
/// with errno turned into values.
/// Closing is the owner's job (through the loop, so no event reaches a reused fd).
package struct DatagramSocket {
    package let fd: Int32
    package let address: PeerAddress

    /// A non-blocking socket bound to `address` with the given buffer sizes. No
    /// `SO_REUSEADDR`: on Linux it lets a second UDP socket bind the same port and
    /// take its datagrams; a port in use must be an error (`EADDRINUSE`).
    package static func bind(
        _ address: PeerAddress, receiveBufferSize: Int,
        sendBufferSize: Int
    ) throws(SystemError) -> DatagramSocket {
        let type = Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = try systemCall("socket") { socket(AF_INET, type, 0) }
        do {
            try setOption(fd, SO_RCVBUF, Int32(clamping: receiveBufferSize), "setsockopt(SO_RCVBUF)")
            try setOption(fd, SO_SNDBUF, Int32(clamping: sendBufferSize), "setsockopt(SO_SNDBUF)")
            let bound = try address.bind(fd)
            // The loop sets O_NONBLOCK on registration too; do not depend on it.
            try setStatusFlags(fd: fd, adding: O_NONBLOCK)
            return DatagramSocket(fd: fd, address: bound)
        } catch {
            closeDescriptor(fd)
            throw error
        }
    }

    private static func setOption(_ fd: Int32, _ option: Int32, _ value: Int32, _ name: String) throws(SystemError) {
        var value = value
        _ = try systemCall(name) {
            setsockopt(fd, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    /// The buffer size the kernel granted (it doubles the request, and caps it).
    package func bufferSize(_ option: Int32) -> Int {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, option, &value, &length) == 0 else { return 0 }
        return Int(value)
    }

    package enum BatchOutcome: Equatable {
        /// How many datagrams the kernel took or gave, at least one.
        case done(Int)
        /// `EAGAIN`: nothing waiting (receive), no room (send).
        case wouldBlock
        case failed(errno: Int32)
    }

    /// Reads up to `count` waiting datagrams into `batch` (`recvmmsg`); never blocks.
    package func receive(into batch: ReceiveBatch, count: Int) -> BatchOutcome {
        let n = shim_recv_datagrams(
            fd, batch.buffers.baseAddress, UInt32(batch.bufferSize),
            batch.sources.baseAddress, batch.lengths.baseAddress,
            UInt32(min(count, batch.capacity)))
        return Self.outcome(n)
    }

    /// At most this many datagrams a `sendmmsg` or `recvmmsg`.
    package static let maxDatagramsPerCall = Int(SHIM_MAX_DATAGRAMS)

    /// Sends datagram i (`lengths[i]` bytes at `bases[i]`) to `destinations[i]`, in order, for i
    /// below `count` (at most `maxDatagramsPerCall`: `sendmmsg`); never blocks. `.done(k)` with k
    /// short of `count`: the kernel stopped at datagram k, and a call starting there says why.
    package func send(
        bases: UnsafePointer<UnsafeRawPointer?>, lengths: UnsafePointer<UInt32>,
        destinations: UnsafePointer<sockaddr_in>, count: Int
    ) -> BatchOutcome {
        Self.outcome(
            shim_send_datagrams(
                fd, bases, lengths, destinations,
                UInt32(min(count, Self.maxDatagramsPerCall))))
    }

    /// Sends one datagram (`sendto`, through the call a batch of one makes); never blocks.
    package func send(_ bytes: UnsafeRawBufferPointer, to peer: PeerAddress) -> BatchOutcome {
        var base = UnsafeRawPointer(bytes.baseAddress)
        var length = UInt32(bytes.count)
        var destination = peer.socketAddress
        return Self.outcome(shim_send_datagrams(fd, &base, &length, &destination, 1))
    }

    private static func outcome(_ n: Int32) -> BatchOutcome {
        if n > 0 { return .done(Int(n)) }
        let e = n == 0 ? EAGAIN : errno
        return e == EAGAIN || e == EWOULDBLOCK ? .wouldBlock : .failed(errno: e)
    }
}
