import Glibc
import LoopCore

/// A non-blocking-capable UDP socket bound to 127.0.0.1 (port 0 = any free
/// port), for the harness, the benchmarks and the tests.
public final class LoopbackSocket {
    public let fd: Int32
    public let port: UInt16

    public init(port: UInt16 = 0) throws(SystemError) {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket", errno: errno) }
        var addr = Self.loopback(port)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        guard ok else {
            let err = errno
            close(fd)
            throw SystemError("bind 127.0.0.1:\(port)", errno: err)
        }
        self.fd = fd
        self.port = UInt16(bigEndian: addr.sin_port)
    }

    deinit { close(fd) }

    static func loopback(_ port: UInt16) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return addr
    }

    /// Sends one datagram to 127.0.0.1:`port`; returns the bytes sent or -1.
    @discardableResult
    public func send(to port: UInt16, _ bytes: [UInt8] = [1]) -> Int {
        var addr = Self.loopback(port)
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }

    /// Reads and discards every queued datagram; returns how many.
    @discardableResult
    public func drain() -> Int {
        var buf = [UInt8](repeating: 0, count: 65536)
        var n = 0
        while recv(fd, &buf, buf.count, Int32(MSG_DONTWAIT)) >= 0 { n += 1 }
        return n
    }

    /// Sends every queued datagram back to its sender; returns how many.
    @discardableResult
    public func echoAll() -> Int {
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
