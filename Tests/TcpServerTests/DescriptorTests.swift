import Glibc
import TestSupport
import Testing

@testable import HttpServer
@testable import TcpServer

/// Holds open descriptors until the lowest free one is at least `floor`; releases them on `release()`.
final class DescriptorFiller {
    private var held: [Int32] = []

    init(until floor: Int32) {
        while true {
            let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
            precondition(fd >= 0, "open: \(errno)")
            held.append(fd)
            if fd >= floor - 1 { break }
        }
    }

    func release() {
        for fd in held { close(fd) }
        held = []
    }

    deinit { release() }
}

extension TcpServerLoopTests {
    @Suite struct Descriptors {
        /// A connection accepted on a descriptor ≥ 1024 cannot be watched by the
        /// select loop: it is refused cleanly (the 503, closed, `refusedDescriptors`),
        /// and the server goes on serving others. The epoll loop serves the same
        /// descriptor number.
        @Test(arguments: LoopBackendKind.allCases)
        func descriptorPastTheSelectLimit(kind: LoopBackendKind) throws {
            try withHttpServer(kind) { loop, server in
                server.handler = { _, responder in responder.respond(.text(200, "ok")) }
                let filler = DescriptorFiller(until: 1024)
                defer { filler.release() }
                let high = try TestClient(port: server.port)
                #expect(high.fd >= 1024)
                high.send(get("/"))
                let response = try awaitResponse(loop, high)
                switch kind {
                case .legacy:
                    #expect(response.status == 503)
                    try awaitClosed(loop, high)
                    #expect(server.tcp.stats.refusedDescriptors == 1 && server.tcp.stats.incomingOpen == 0)
                case .epoll:
                    #expect(response.status == 200)
                    #expect(server.tcp.connections.values.contains { $0.fd >= 1024 })
                    #expect(server.tcp.stats.refusedDescriptors == 0)
                }
                // Others are still served (on low numbers once the filler is gone).
                filler.release()
                let low = try TestClient(port: server.port)
                low.send(get("/"))
                #expect(try awaitResponse(loop, low).status == 200)
                #expect(server.tcp.stats.accepted == 2)
            }
        }
    }
}
