import Compat
import Glibc
import LoopTools
import TestSupport
import Testing

extension LoopConformance {
    /// The console's connection limit, as a whole process.
    @Suite struct ConsoleLimits {
        /// By default the console holds at most 300 connections, the original's HTTP server's
        /// `m_httpMaxSockets`: past it the least used is closed (counted in `closedLeastUsed`).
        @Test(arguments: LoopBackendKind.allCases)
        func consoleHoldsAtMostTheOriginalsThreeHundred(_ kind: LoopBackendKind) throws {
            let node = try ServedNode(["--backend", kind.rawValue, "--http", "0"])
            let console = try #require(node.consolePort, "no console line in \(node.seen)")
            var held: [Int32] = []
            defer { for fd in held { close(fd) } }
            for _ in 0..<320 {
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                try #require(fd >= 0)
                held.append(fd)
                var address = PeerAddress(ip: 0x7f00_0001, port: console).socketAddress
                let connected = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
                try #require(connected == 0, "connect: errno \(errno)")
            }
            // Until the node has accepted all 320 (and the status request itself).
            let deadline = monotonicNanoseconds() + 20_000_000_000
            var status = try HttpExchange(
                port: console, "GET /status.json HTTP/1.1\r\nHost: 127.0.0.1:\(console)\r\n\r\n")
            while (jsonInt(status.body, "accepted") ?? 0) < 321 && monotonicNanoseconds() < deadline {
                usleep(50_000)
                status = try HttpExchange(
                    port: console, "GET /status.json HTTP/1.1\r\nHost: 127.0.0.1:\(console)\r\n\r\n")
            }
            let open = try #require(jsonInt(status.body, "incomingOpen"), "\(status.body)")
            let closed = try #require(jsonInt(status.body, "closedLeastUsed"), "\(status.body)")
            #expect(open <= 300, "\(open) connections held")
            #expect(closed >= 20, "\(closed) least-used connections closed")
        }
    }
}
