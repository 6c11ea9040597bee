import Glibc
import LoopTools
import TestSupport
import Testing

@testable import Cluster
@testable import UdpServer

extension ClusterLoopTests {
    @Suite struct Failover {
        /// A client of `cluster` with failover: its own server (127.0.0.30) and pings.
        final class Client {
            let server: UdpServer
            let pings: PingServer
            let failover: FailoverClient

            init(_ loop: Loop, _ cluster: LoopCluster, _ configuration: FailoverConfiguration) throws {
                var serverConfiguration = UdpServerConfiguration.loopback
                serverConfiguration.bindAddress = "127.0.0.30"
                server = UdpServer(loop: loop, configuration: serverConfiguration)
                try server.start()
                pings = try PingServer(
                    loop: loop, server: server, hosts: cluster.hosts, selfID: nil, configuration: .testing)
                try pings.start()
                failover = FailoverClient(loop: loop, server: server, pings: pings, configuration: configuration)
            }

            func close() {
                pings.stop()
                server.shutdown(urgent: true)
            }
        }

        static var quick: FailoverConfiguration {
            var c = FailoverConfiguration()
            c.attemptTimeoutMs = 300
            c.giveUpMs = 5_000
            return c
        }

        /// Requests go to the live hosts in turn, each answered once, none retried.
        @Test(arguments: LoopBackendKind.allCases)
        func requestsGoToTheHostsInTurn(kind: LoopBackendKind) throws {
            try withCluster(kind) { loop, cluster in
                let client = try Client(loop, cluster, Self.quick)
                defer { client.close() }
                try runUntil(loop) { client.pings.aliveIDs == [0, 1, 2] }
                var outcomes: [FailoverOutcome] = []
                for i in 0..<30 { client.failover.send([UInt8(i)], type: 2) { outcomes.append($0) } }
                try runUntil(loop) { outcomes.count == 30 }
                try runFor(loop, ms: 50)
                #expect(outcomes.count == 30)
                #expect(outcomes.allSatisfy { $0.attempts == 1 })
                #expect(Set(outcomes.compactMap { try? $0.result.get() }.map { $0[0] }) == Set(0..<30))
                #expect(client.failover.hostStats.map(\.answered) == [10, 10, 10])
                #expect(
                    client.failover.stats
                        == FailoverStats(
                            requests: 30, succeeded: 30, failed: 0, retried: 0,
                            duplicateCompletions: 0, waitedForHost: 0))
            }
        }

        /// A host that goes away mid-request (it heard the request and never answers): the
        /// attempt times out and the same request is answered by another host, once; the
        /// silent host gets no more requests until a ping shows it answering again.
        @Test(arguments: LoopBackendKind.allCases)
        func requestMovesToAnotherHostWhenOneGoesAway(kind: LoopBackendKind) throws {
            try withCluster(kind) { loop, cluster in
                let client = try Client(loop, cluster, Self.quick)
                defer { client.close() }
                try runUntil(loop) { client.pings.aliveIDs == [0, 1, 2] }
                // Host 0 takes requests and sits on them, silently.
                var held: [IncomingRequest] = []
                cluster.servers[0].registerHandler(type: 2) { held.append($0) }
                cluster.silencers[0].silent = true
                var outcomes: [FailoverOutcome] = []
                for i in 0..<9 { client.failover.send([UInt8(i)], type: 2) { outcomes.append($0) } }
                try runUntil(loop) { outcomes.count == 9 }
                try runFor(loop, ms: 100)
                #expect(outcomes.count == 9, "each request ends once")
                #expect(outcomes.allSatisfy { (try? $0.result.get()) != nil }, "\(outcomes.map(\.result))")
                let attempts = outcomes.map(\.attempts)
                #expect(attempts.filter { $0 == 2 }.count == 3, "\(attempts)")
                for outcome in outcomes where outcome.attempts == 2 {
                    #expect(outcome.answeredBy != 0, "a moved request was answered by another host")
                }
                #expect(client.failover.hostStats[0].timedOut >= 1 && client.failover.hostStats[0].answered == 0)
                #expect(client.failover.stats.retried == 3 && client.failover.stats.duplicateCompletions == 0)
                #expect(!held.isEmpty, "host 0 did take requests before it went quiet")
                // Suspect (and soon dead): the next requests avoid it.
                let attemptsBefore = client.failover.hostStats[0].attempts
                for i in 0..<6 { client.failover.send([UInt8(i)], type: 2) { outcomes.append($0) } }
                try runUntil(loop) { outcomes.count == 15 }
                #expect(client.failover.hostStats[0].attempts == attemptsBefore)
                #expect(outcomes.suffix(6).allSatisfy { $0.attempts == 1 })
            }
        }

        /// A host that refuses (an error reply) is not the end: the request moves on.
        @Test(arguments: LoopBackendKind.allCases)
        func refusalMovesTheRequestOn(kind: LoopBackendKind) throws {
            try withCluster(kind) { loop, cluster in
                let client = try Client(loop, cluster, Self.quick)
                defer { client.close() }
                try runUntil(loop) { client.pings.aliveIDs == [0, 1, 2] }
                let server = cluster.servers[1]
                server.registerHandler(type: 2) { [unowned server] in try? server.sendErrorReply(errno: EAGAIN, to: $0)
                }
                var outcomes: [FailoverOutcome] = []
                for i in 0..<6 { client.failover.send([UInt8(i)], type: 2) { outcomes.append($0) } }
                try runUntil(loop) { outcomes.count == 6 }
                #expect(outcomes.allSatisfy { (try? $0.result.get()) != nil })
                #expect(client.failover.hostStats[1].refused >= 1 && client.failover.hostStats[1].answered == 0)
                #expect(outcomes.allSatisfy { $0.answeredBy != 1 })
            }
        }

        /// No host answering at all: each request fails once, after the give-up time and not
        /// long after it, with the last error; a request sent with no host alive waits for one.
        @Test(arguments: LoopBackendKind.allCases)
        func everyHostGoneFailsOnceAfterTheGiveUpTime(kind: LoopBackendKind) throws {
            try withCluster(kind, count: 2) { loop, cluster in
                var configuration = Self.quick
                configuration.giveUpMs = 1_000
                let client = try Client(loop, cluster, configuration)
                defer { client.close() }
                try runUntil(loop) { client.pings.aliveIDs == [0, 1] }
                for silencer in cluster.silencers { silencer.silent = true }
                var outcomes: [FailoverOutcome] = []
                let start = monotonicNanoseconds()
                for i in 0..<4 { client.failover.send([UInt8(i)], type: 2) { outcomes.append($0) } }
                try runUntil(loop) { outcomes.count == 4 }
                let elapsedMs = (monotonicNanoseconds() - start) / 1_000_000
                try runFor(loop, ms: 400)
                #expect(outcomes.count == 4)
                #expect(elapsedMs >= 900 && elapsedMs < 3_000, "\(elapsedMs) ms")
                for outcome in outcomes {
                    guard case .failure(.gaveUp(let attempts, _)) = outcome.result else {
                        Issue.record("\(outcome.result)")
                        continue
                    }
                    #expect(attempts >= 1)
                }
                #expect(client.failover.stats.failed == 4 && client.failover.stats.duplicateCompletions == 0)

                // Everyone dead now: a new request waits for a host, and gets one when it is back.
                try runUntil(loop) { client.pings.aliveIDs.isEmpty }
                var late: FailoverOutcome?
                client.failover.send([9], type: 2) { late = $0 }
                try runFor(loop, ms: 100)
                #expect(late == nil && client.failover.stats.waitedForHost >= 1)
                cluster.silencers[1].silent = false
                try runUntil(loop) { late != nil }
                #expect((try? late?.result.get()) == [9] && late?.answeredBy == 1)
            }
        }

        /// A message too large for any host is not retried: it fails at once.
        @Test(arguments: LoopBackendKind.allCases)
        func errorsNoHostWouldChangeAreNotRetried(kind: LoopBackendKind) throws {
            try withCluster(kind) { loop, cluster in
                let client = try Client(loop, cluster, Self.quick)
                defer { client.close() }
                try runUntil(loop) { client.pings.aliveIDs == [0, 1, 2] }
                var outcome: FailoverOutcome?
                let size = client.server.geometry.maxMessageSize + 1
                client.failover.send([UInt8](repeating: 0, count: size), type: 2) { outcome = $0 }
                try runUntil(loop) { outcome != nil }
                #expect(outcome?.attempts == 1)
                guard case .failure(.notRetriable(.messageTooLarge)) = outcome?.result else {
                    Issue.record("\(String(describing: outcome?.result))")
                    return
                }
            }
        }
    }
}
