import Glibc
import TestSupport
import Testing

@testable import HttpServer
@testable import TcpServer

private let second: UInt32 = 0x7f00_0002
private let third: UInt32 = 0x7f00_0003

extension TcpServerLoopTests {
    @Suite struct Limits {
        /// The defaults are the numbers README and MIGRATION.md give.
        @Test func defaultsAreTheDocumentedOnes() {
            let c = TcpServerConfiguration()
            #expect(c.listenBacklog == 128 && c.maxIncomingSockets == 15_000)
            #expect(c.timeoutMs == 60_000 && c.idleTimeoutMs == 60_000 && c.scanIntervalMs == 500)
            #expect(c.requestDeadlineMs == 30_000 && c.acceptBudgetMs == 15)
            #expect(c.minimumReadRate == 20 && c.minimumRateAfterMs == 60_000)
            let h = HttpLimits()
            #expect(h.maxHeaderBytes == 8 * 1024 && h.maxBodyBytes == 64 * 1024)
        }

        /// At `maxIncomingSockets` (8) a new connection closes the least recently
        /// active reading socket of the address holding the most (127.0.0.2, six of
        /// them, against two of 127.0.0.3) and is served; the others stay open.
        @Test(arguments: LoopBackendKind.allCases)
        func leastUsedOfTheBusiestAddressMakesRoom(kind: LoopBackendKind) throws {
            try withHttpServer(kind, .testing { $0.maxIncomingSockets = 8 }) { loop, server in
                server.handler = { request, responder in responder.respond(.text(200, String(request.path))) }
                var hog: [TestClient] = []
                for _ in 0..<6 {
                    hog.append(try TestClient(port: server.port, from: second))
                    try runUntil(loop) { server.tcp.stats.accepted == hog.count }
                }
                let few = [
                    try TestClient(port: server.port, from: third), try TestClient(port: server.port, from: third),
                ]
                try runUntil(loop) { server.tcp.stats.incomingOpen == 8 }
                // Every hog socket but #1 does something later: #1 is the least recently active.
                let openedBy = loop.now
                try runUntil(loop) { loop.now > openedBy + 5 }
                for (i, client) in hog.enumerated() where i != 1 {
                    client.send(get("/\(i)"))
                    #expect(try awaitResponse(loop, client).body == bytes("/\(i)\n"))
                }
                let newcomer = try TestClient(port: server.port, from: third)
                newcomer.send(get("/new"))
                #expect(try awaitResponse(loop, newcomer).body == bytes("/new\n"))
                try awaitClosed(loop, hog[1])
                #expect(server.tcp.stats.closedLeastUsed == 1 && server.tcp.stats.refusedAtLimit == 0)
                for client in hog + few { client.pump() }
                #expect((hog + few).map(\.peerClosed) == [false, true, false, false, false, false, false, false])
            }
        }

        /// When every socket at the limit has a request with its handler, none can
        /// give way: the new connection is refused with the 503 and closed, counted in
        /// `refusedAtLimit`; the held requests are answered later all the same.
        @Test(arguments: LoopBackendKind.allCases)
        func allBusyRefusesTheNewcomerWith503(kind: LoopBackendKind) throws {
            try withHttpServer(kind, .testing { $0.maxIncomingSockets = 8 }) { loop, server in
                var held: [HttpResponder] = []
                server.handler = { _, responder in held.append(responder) }
                let clients = try (0..<8).map { _ in try TestClient(port: server.port, from: second) }
                for client in clients { client.send(get("/hold")) }
                try runUntil(loop) { held.count == 8 }
                let newcomer = try TestClient(port: server.port, from: third)
                newcomer.send(get("/new"))
                #expect(try awaitResponse(loop, newcomer).status == 503)
                try awaitClosed(loop, newcomer)
                #expect(server.tcp.stats.refusedAtLimit == 1 && server.tcp.stats.closedLeastUsed == 0)
                #expect(server.stats.refusedByStatus[503] == 1)
                for responder in held { responder.respond(.text(200, "late")) }
                // A responder holds its server, which holds the handler holding `held`.
                held = []
                for client in clients { #expect(try awaitResponse(loop, client).status == 200) }
            }
        }

        /// Out of descriptors (`EMFILE`), the accept callback makes room by closing
        /// one least-used socket and takes the waiting connection on a later poll, once
        /// that close has happened: one socket gives way, not every idle one.
        @Test(arguments: LoopBackendKind.allCases)
        func outOfDescriptorsClosesOneSocket(kind: LoopBackendKind) throws {
            try withTcpServer(kind) { loop, server in
                server.echo()
                let idle = try (0..<6).map { _ in try TestClient(port: server.port) }
                try runUntil(loop) { server.stats.incomingOpen == 6 }
                let newcomer = try TestClient(port: server.port)
                newcomer.send("hello\n")
                // The lowest free descriptor becomes the limit: the next accept fails with EMFILE.
                let probe = open("/dev/null", O_RDONLY)
                close(probe)
                var saved = rlimit()
                getrlimit(RLIMIT_NOFILE_VALUE, &saved)
                var lowered = saved
                lowered.rlim_cur = rlim_t(probe)
                setrlimit(RLIMIT_NOFILE_VALUE, &lowered)
                do {
                    defer { setrlimit(RLIMIT_NOFILE_VALUE, &saved) }
                    try runUntil(loop, timeoutMs: 5_000) { server.stats.accepted == 7 }
                }
                #expect(try awaitLine(loop, newcomer) == "HELLO")
                for client in idle { client.pump() }
                #expect(server.stats.closedLeastUsed == 1, "closed: \(server.stats.closedLeastUsed)")
                #expect(idle.filter(\.peerClosed).count == 1)
            }
        }
    }
}

/// `RLIMIT_NOFILE` as `getrlimit` takes it on Glibc.
let RLIMIT_NOFILE_VALUE = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
