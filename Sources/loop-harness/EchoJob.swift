import Compat
import Glibc

/// The main job before the RPC node: the default loop, a heartbeat sleep
/// callback and a UDP echo read callback on 127.0.0.1.
func runEcho(_ args: Arguments) throws -> Int32 {
    let backend = try args.backend()
    prepareProcessSignals(for: backend)
    let loop = try Loop.make(backend)
    let socket = try UDPEchoSocket(port: UInt16(try args.int("--port", default: 0)))
    var echoed = 0
    try loop.registerRead(fd: socket.fd) { fd in echoed += socket.echoAll() }
    var beats = 0
    try loop.registerSleep(every: 1000) {
        beats += 1
        say("heartbeat \(beats): echoed \(echoed) datagrams, cpu \(Int(loop.cpuUsage.rounded()))%")
        
    }
    let seconds = try args.int("--seconds", default: 0)
    if seconds > 0 {
        let started = loop.now
        try loop.registerSleep(every: 100) { if loop.now - started >= Int64(seconds) * 1000 { loop.stop() } }
    }
    say("loop-harness: backend \(loop.kind), echo on 127.0.0.1:\(socket.port), pid \(getpid())")
    
    let reason = try loop.run()
    say("stopped: \(reason)")
    say("counters: \(loop.counters)")
    try loop.close()
    Glibc.close(socket.fd)
    return 0
}

/// A non-blocking UDP socket bound to 127.0.0.1 that echoes what it reads.
struct UDPEchoSocket {
    let fd: Int32
    let port: UInt16

    init(port: UInt16) throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket", errno: errno) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw SystemError("bind", errno: errno) }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        self.fd = fd
        self.port = UInt16(bigEndian: addr.sin_port)
    }

    /// Sends `bytes` to 127.0.0.1:`port`.
    func send(to port: UInt16, _ bytes: [UInt8]) {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }

    /// Echoes every queued datagram; returns how many.
    func echoAll() -> Int {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var peer = sockaddr_storage()
        var count = 0
        while true {
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = buffer.withUnsafeMutableBytes { b in
                withUnsafeMutablePointer(to: &peer) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, b.baseAddress, b.count, 0, $0, &len) }
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
