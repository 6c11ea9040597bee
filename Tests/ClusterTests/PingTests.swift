import Glibc
import LoopTools
import TestSupport
import Testing

@testable import Cluster
@testable import UdpServer

extension ClusterLoopTests {
    @Suite struct Pings {
        /// Every other host starts dead (as in the original) and turns alive on its first
        /// ping reply, with an RTT and what it runs; a node's own row is alive from the start.
        @Test(arguments: LoopBackendKind.allCases)
        func hostsTurnAliveOnTheirFirstReply(kind: LoopBackendKind) throws {
            try withCluster(kind) { loop, cluster in
                let first = cluster.pings[0]
                #expect(first.table.map(\.alive) == [true, false, false])
                try runUntil(loop) { cluster.pings.allSatisfy { $0.aliveIDs == [0, 1, 2] } }
                for status in first.table where !status.isSelf {
                    #expect(status.rttMs != nil && status.lastReplyAt != nil && status.pingReplies >= 1)
                    #expect(status.info?.backend == kind && status.info?.hostID == status.host.id)
                    #expect(status.info?.pid == getpid())
                    let clockSkew = abs((status.info?.localTimeMs ?? 0) - Int64(time(nil)) * 1_000)
                    #expect(clockSkew < 60_000, "the PingInfo carries the wall clock: \(clockSkew) ms off")
                    #expect(status.deaths == 0 && status.downMs(now: loop.now) == 0)
                }
                #expect(first.table[0].pingsSent == 0, "a node does not ping itself")
            }
        }

        /// A member alone in its hosts file has no one to ping: no ping timer wakes its loop,
        /// which rests (its heartbeat alone: at most a wake-up a second, the rest the servers').
        @Test(arguments: LoopBackendKind.allCases)
        func aLoneMemberDoesNotWakeToPing(kind: LoopBackendKind) throws {
            try withCluster(kind, count: 1) { loop, cluster in
                #expect(cluster.pings[0].aliveIDs == [0])
                try runFor(loop, ms: 200)
                let before = loop.counters.sleepCallbacks
                try runFor(loop, ms: 1_000)
                let ran = loop.counters.sleepCallbacks - before
                #expect(ran <= 3, "\(ran) sleep callbacks in a second of rest")
            }
        }

        /// A host that stops answering is dead once it has been silent for the dead-host
        /// timeout, not before; its down time grows while it is dead and stops when it
        /// answers again, and each transition is reported once.
        @Test(arguments: LoopBackendKind.allCases)
        func silentHostGoesDeadAndComesBack(kind: LoopBackendKind) throws {
            try withCluster(kind) { loop, cluster in
                let observer = cluster.pings[0]
                var changes: [(Int, Bool)] = []
                observer.onChange = { changes.append(($0, $1)) }
                try runUntil(loop) { observer.aliveIDs == [0, 1, 2] }
                changes.removeAll()

                cluster.silencers[1].silent = true
                let silencedAt = loop.now
                try runUntil(loop) { !observer.isAlive(1) }
                let deadAfter = Int64(observer.configuration.deadAfterMs)
                // Its last reply came at most one ping interval (plus a slow iteration) before the silence.
                #expect(
                    loop.now - silencedAt >= deadAfter - Int64(observer.configuration.intervalMs) - 50,
                    "dead \(loop.now - silencedAt) ms after it fell silent; the timeout is \(deadAfter) ms")
                #expect(observer.isAlive(2), "the other host is not affected")
                #expect(observer.table[1].deaths == 1)
                try runFor(loop, ms: 300)
                let down = observer.table[1].downMs(now: loop.now)
                #expect(down >= 250, "down for \(down) ms")
                #expect(
                    observer.table[1].pingTimeouts + observer.table[1].pingsSent - observer.table[1].pingReplies >= 1)

                cluster.silencers[1].silent = false
                try runUntil(loop) { observer.isAlive(1) }
                let downWhenBack = observer.table[1].downMs(now: loop.now)
                try runFor(loop, ms: 200)
                #expect(
                    observer.table[1].downMs(now: loop.now) == downWhenBack, "down time stops growing once it is back")
                #expect(observer.table[1].deaths == 1)
                #expect(changes.map(\.0) == [1, 1] && changes.map(\.1) == [false, true], "\(changes)")
            }
        }

        /// A node going down tells the others, which count it dead at once (long before the
        /// timeout) and end their ping to it; it is alive again at its first reply after that.
        @Test(arguments: LoopBackendKind.allCases)
        func goingDownNoteIsDeathAtOnce(kind: LoopBackendKind) throws {
            var configuration = PingConfiguration.testing
            configuration.deadAfterMs = 30_000
            try withCluster(kind, configuration: configuration) { loop, cluster in
                try runUntil(loop) { cluster.pings.allSatisfy { $0.aliveIDs == [0, 1, 2] } }
                var acknowledged = false
                let start = monotonicNanoseconds()
                cluster.pings[2].broadcastGoingDown { acknowledged = true }
                try runUntil(loop) { acknowledged }
                #expect(monotonicNanoseconds() - start < 5_000_000_000, "well within the 30 s dead-host timeout")
                for observer in cluster.pings[0...1] {
                    #expect(!observer.isAlive(2))
                    #expect(observer.table[2].goingDownNotes == 1 && observer.table[2].deaths == 1)
                    #expect(observer.table[2].pingInFlight == nil)
                }
                // Pinged while it drains, it answers nothing (as the original, whose server
                // discards everything after its notes): nobody counts it alive again.
                #expect(cluster.pings[2].isGoingDown)
                try runUntil(loop) { cluster.pings[2].stats.pingsDiscarded >= 2 }
                #expect(!cluster.pings[0].isAlive(2) && !cluster.pings[1].isAlive(2))
                #expect(cluster.pings[0].table[2].deaths == 1, "one death, however many unanswered pings")
                #expect(cluster.servers[2].stats.requestsDiscarded == cluster.pings[2].stats.pingsDiscarded)
                // Staying after all (start again) brings it back at the next reply.
                try cluster.pings[2].start()
                try runUntil(loop) { cluster.pings[0].isAlive(2) && cluster.pings[1].isAlive(2) }
            }
        }

        /// A node that has just started counts every other host dead until their first replies,
        /// but those pinging it count on it: they get its going-down note all the same.
        @Test(arguments: LoopBackendKind.allCases)
        func membersThatPingGetTheNoteBeforeTheyAnswer(kind: LoopBackendKind) throws {
            var slow = PingConfiguration.testing
            slow.intervalMs = 1_000
            slow.deadAfterMs = 30_000
            var quick = PingConfiguration.testing
            quick.deadAfterMs = 30_000
            try withCluster(kind, count: 2, configurationOf: { $0 == 0 ? slow : quick }) { loop, cluster in
                try runUntil(loop) { cluster.pings[1].isAlive(0) }
                #expect(!cluster.pings[0].isAlive(1), "host 0 has not pinged yet")
                var acknowledged = false
                cluster.pings[0].broadcastGoingDown { acknowledged = true }
                try runUntil(loop) { acknowledged }
                #expect(cluster.pings[1].table[0].goingDownNotes == 1 && !cluster.pings[1].isAlive(0))
            }
        }

        /// A going-down note from anywhere but the member's own address is refused (EPERM)
        /// and counted: nobody declares a host dead for it. A `PingInfo` that does not parse,
        /// or in which a member names another host's ID (the original crashes on it), gets
        /// EINVAL and is counted; a stranger's 3-byte ping is answered, empty.
        @Test(arguments: LoopBackendKind.allCases)
        func forgedNotesAndMalformedPingsAreRefused(kind: LoopBackendKind) throws {
            try withCluster(kind) { loop, cluster in
                try runUntil(loop) { cluster.pings[0].aliveIDs == [0, 1, 2] }
                var impostorConfiguration = UdpServerConfiguration.loopback
                impostorConfiguration.bindAddress = "127.0.0.9"
                let impostor = UdpServer(loop: loop, configuration: impostorConfiguration)
                try impostor.start()
                defer { impostor.shutdown(urgent: true) }
                var unterminated = PingInfo(hostID: 1, localTimeMs: 0, version: "").bytes
                for index in 84..<105 { unterminated[index] = 0x41 }
                let target = cluster.hosts.hosts[0].address
                var results: [String: RpcResult] = [:]
                for (name, payload, sender) in [
                    ("forged note", PingMessage.goingDown(hostID: 1).bytes, impostor),
                    ("unterminated", unterminated, impostor),
                    ("another's ID", PingInfo(hostID: 1, localTimeMs: 0, version: "x").bytes, cluster.servers[2]),
                    ("probe", PingMessage.probe.bytes, impostor),
                ] {
                    sender.sendRequest(payload, type: pingMessageType, to: target, timeoutMs: 5_000, niceness: 0) {
                        results[name] = $0
                    }
                }
                try runUntil(loop) { results.count == 4 }
                #expect(results["forged note"] == .failure(.remote(errno: EPERM)), "\(results)")
                #expect(results["unterminated"] == .failure(.remote(errno: EINVAL)), "\(results)")
                #expect(results["another's ID"] == .failure(.remote(errno: EINVAL)), "\(results)")
                #expect(results["probe"] == .success([]), "\(results)")
                #expect(cluster.pings[0].stats.refusedNotes == 1 && cluster.pings[0].stats.malformedPings == 2)
                #expect(cluster.pings[0].isAlive(1) && cluster.pings[0].table[1].goingDownNotes == 0)
                #expect(cluster.pings[0].table[2].info?.hostID == 2, "host 2's row keeps what host 2 said")
            }
        }

        /// An unanswered ping is sent again after 1 s, then 2 s later, as the original's
        /// (backoff 1000 ms, max wait 2000 ms: PingServer.cpp:571-585), not every 200 ms;
        /// `scripts/probe-original` sees the same gaps between the original's copies.
        @Test(arguments: LoopBackendKind.allCases)
        func unansweredPingsAreResentAsTheOriginals(kind: LoopBackendKind) throws {
            var configuration = PingConfiguration.testing
            configuration.deadAfterMs = 20_000
            try withCluster(kind, count: 2, configuration: configuration) { loop, cluster in
                try runUntil(loop) { cluster.pings[0].aliveIDs == [0, 1] }
                // Host 1 stops pinging, then hears without answering once its exchanges ended.
                cluster.pings[1].stop()
                let settled = loop.now + 300
                try runUntil(loop) { loop.now >= settled }
                cluster.silencers[1].silent = true
                let server = cluster.servers[0]
                let silencedAt = loop.now
                var seen = server.stats.resends
                var resentAt: [Int64] = []
                try runUntil(loop, timeoutMs: 15_000) {
                    if server.stats.resends > seen {
                        seen = server.stats.resends
                        resentAt.append(loop.now)
                    }
                    return resentAt.count >= 2
                }
                // A ping leaves within an interval (20 ms) of the silence; a loaded machine
                // only delays a resend, so the lower bounds hold with a margin for the interval.
                #expect(
                    resentAt[0] - silencedAt >= 900, "first resend \(resentAt[0] - silencedAt) ms after the silence")
                #expect(resentAt[1] - resentAt[0] >= 1_900, "second resend \(resentAt[1] - resentAt[0]) ms later")
            }
        }

        /// A client of the cluster (no ID) pings too, and gets the going-down note of a
        /// host it pinged; a flood of pings from many addresses cannot grow the list of
        /// such clients past its bound.
        @Test(arguments: LoopBackendKind.allCases)
        func clientsThatPingHearTheGoingDownNote(kind: LoopBackendKind) throws {
            var configuration = PingConfiguration.testing
            configuration.deadAfterMs = 30_000
            try withCluster(kind, count: 2, configuration: configuration) { loop, cluster in
                var clientConfiguration = UdpServerConfiguration.loopback
                clientConfiguration.bindAddress = "127.0.0.20"
                let client = UdpServer(loop: loop, configuration: clientConfiguration)
                try client.start()
                let watcher = try PingServer(
                    loop: loop, server: client, hosts: cluster.hosts, selfID: nil,
                    configuration: configuration)
                try watcher.start()
                defer {
                    watcher.stop()
                    client.shutdown(urgent: true)
                }
                try runUntil(loop) { watcher.aliveIDs == [0, 1] }
                var acknowledged = false
                cluster.pings[1].broadcastGoingDown { acknowledged = true }
                try runUntil(loop) { acknowledged }
                #expect(!watcher.isAlive(1) && watcher.table[1].goingDownNotes == 1)
                #expect(watcher.isAlive(0))
            }
        }
    }
}
