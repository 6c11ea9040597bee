import CLoopShim
import Glibc
import LoopCore

/// A non-blocking-capable UDP socket bound to 127.0.0.1, or another 127/8 address
/// (port 0 = any free port), for the harness, the benchmarks and the tests. It
/// sends to 127.0.0.1 unless told otherwise. Only its descriptor is shared, so threads may share it.
package final class LoopbackSocket: Sendable {
    package let fd: Int32
    package let port: UInt16

    /// `ip`: the 127/8 address to bind, e.g. `0x7f00_0002` for a second source on this host.
    package init(port: UInt16 = 0, ip: UInt32 = 0x7f00_0001) throws(SystemError) {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket", errno: errno) }
        var addr = Self.address(port, ip: ip)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        guard ok else {
            let err = errno
            close(fd)
            throw SystemError("bind \(ip >> 24).\(ip >> 16 & 0xff).\(ip >> 8 & 0xff).\(ip & 0xff):\(port)", errno: err)
        }
        self.fd = fd
        self.port = UInt16(bigEndian: addr.sin_port)
    }

    deinit { close(fd) }

    static func address(_ port: UInt16, ip: UInt32) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = ip.bigEndian
        return addr
    }

    /// Sends one datagram to `ip`:`port` (127.0.0.1 unless given); returns the bytes sent or -1.
    @discardableResult
    package func send(to port: UInt16, ip: UInt32 = 0x7f00_0001, _ bytes: [UInt8] = [1]) -> Int {
        var addr = Self.address(port, ip: ip)
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }

    /// Reads and discards every queued datagram; returns how many.
    @discardableResult
    package func drain() -> Int { drainCounting().datagrams }

    /// Reads and discards every queued datagram; returns how many, and their bytes.
    @discardableResult
    package func drainCounting() -> (datagrams: Int, bytes: Int) {
        var buf = [UInt8](repeating: 0, count: 65536)
        var count = (datagrams: 0, bytes: 0)
        while true {
            let n = recv(fd, &buf, buf.count, Int32(MSG_DONTWAIT))
            if n < 0 { return count }
            count.datagrams += 1
            count.bytes += n
        }
    }

    /// Sends every queued datagram back to its sender; returns how many.
    @discardableResult
    package func echoAll() -> Int {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var peer = sockaddr_storage()
        var count = 0
        while true {
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = buffer.withUnsafeMutableBytes { b in
                withUnsafeMutablePointer(to: &peer) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(fd, b.baseAddress, b.count, Int32(MSG_DONTWAIT), $0, &len)
                    }
                }
            }
            if n < 0 { return count }
            _ = buffer.withUnsafeBytes { b in
                withUnsafePointer(to: &peer) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, b.baseAddress, n, 0, $0, len) }
                }
            }
            count += 1
        }
    }
}
