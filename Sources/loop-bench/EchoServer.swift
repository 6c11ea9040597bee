import Compat
import Glibc
import LoopTools

/// `loop-bench echo-server`: the loop's raw read callback echoing datagrams,
/// the way the C reference does it (recvfrom until EAGAIN, a sendto each).
/// Prints `ready port=P ...`, runs until SIGTERM (or `--seconds`), then
/// prints `done echoed=... polls=...`.
func runEchoServer(_ options: Options) throws -> Int32 {
    let backend = try options.backend()
    ProcessSignals.prepare(for: backend)
    let port = try options.int("--port", default: 0)
    let seconds = try options.int("--seconds", default: 0)

    let loop = try Loop.make(backend)
    let socket = try LoopbackSocket(port: UInt16(port))
    let echo = DatagramEcho(fd: socket.fd)
    try loop.registerRead(fd: socket.fd) { _ in echo.echoAll() }
    if seconds > 0 {
        // A safety net: an orphaned server stops by itself.
        let deadline = loop.now + Int64(seconds) * 1000
        try loop.registerSleep(every: 1000) { if loop.now >= deadline { loop.stop() } }
    }
    say("ready port=\(socket.port) pid=\(getpid()) backend=\(backend)")

    let reason = try loop.run()
    let counters = loop.counters
    say("done echoed=\(echo.count) polls=\(counters.polls) wakeups=\(counters.wakeups) reason=\(reason.legacyCode)")
    try loop.close()
    return 0
}

/// Echoes every queued datagram back to its sender, through one buffer
/// allocated up front so the callback does nothing but the system calls.
final class DatagramEcho {
    let fd: Int32
    private(set) var count = 0
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)
    private let peer = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: 1)

    init(fd: Int32) { self.fd = fd }

    deinit {
        buffer.deallocate()
        peer.deallocate()
    }

    func echoAll() {
        let address = UnsafeMutableRawPointer(peer).assumingMemoryBound(to: sockaddr.self)
        while true {
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = recvfrom(fd, buffer.baseAddress, buffer.count, 0, address, &length)
            if n < 0 { return }
            sendto(fd, buffer.baseAddress, n, 0, address, length)
            count += 1
        }
    }
}
