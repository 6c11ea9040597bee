import TestSupport
import Testing

@testable import UdpServer

/// The original's rule for a node at 10.213.0.1 and at 127.0.0.2 (UdpServer.cpp:1299-1321).
@Suite struct OriginalAdmissionRule {
    static func ip(_ text: String) -> UInt32 { PeerAddress.parseIPv4(text)! }

    @Test func admitsMembersLocalNetworksAndAdminsOnly() {
        let rule = UdpAdmission.original(
            members: [Self.ip("10.213.0.1"), Self.ip("172.16.0.9")], admins: [Self.ip("8.8.4.4")],
            ownAddress: Self.ip("10.213.0.1"))
        for admitted in ["10.213.0.200", "10.1.2.3", "192.168.7.7", "172.16.0.9", "8.8.4.4", "127.0.0.1"] {
            #expect(rule.admits(Self.ip(admitted)), "\(admitted)")
        }
        for refused in ["127.0.0.2", "172.16.0.8", "8.8.8.8", "192.169.0.1", "11.0.0.1"] {
            #expect(!rule.admits(Self.ip(refused)), "\(refused)")
        }
        // Members only are trusted to receive at their address: not the local networks, nor admins.
        #expect(rule.isMember(Self.ip("172.16.0.9")) && rule.isMember(Self.ip("127.0.0.1")))
        #expect(!rule.isMember(Self.ip("10.213.0.200")) && !rule.isMember(Self.ip("8.8.4.4")))
    }

    /// A cluster on loopback aliases: its own /16 is 127.0/16, so every 127.0.x.x is local
    /// (the load clients on 127.0.0.1 among them), but not 127.1.x.x.
    @Test func onLoopbackItsOwnSixteenIsLocal() {
        let rule = UdpAdmission.original(members: [Self.ip("127.0.0.2")], ownAddress: Self.ip("127.0.0.2"))
        #expect(rule.admits(Self.ip("127.0.9.9")) && rule.admits(Self.ip("127.0.0.1")))
        #expect(!rule.admits(Self.ip("127.1.0.1")))
        #expect(UdpAdmission.Network(Self.ip("10.1.2.3"), length: 8).description == "10.0.0.0/8")
    }
}

extension UdpServerLoopTests {
    /// Members only (`UdpServerConfiguration.admission`): on loopback, with 127.0.0.1 the one
    /// member, 127.0.0.3 an admin and 127.0.0.2 nothing, the test's narrow stand-in for a
    /// stranger beyond the local networks.
    @Suite struct MembersOnly {
        static let member: UInt32 = 0x7f00_0001
        static let stranger: UInt32 = 0x7f00_0002
        static let admin: UInt32 = 0x7f00_0003

        static func configuration(log: LogLines? = nil) -> UdpServerConfiguration {
            .loopback {
                $0.admission = UdpAdmission(members: [member], admins: [admin])
                $0.log = log.map { lines in { lines.append($0) } }
                $0.dropLogIntervalMs = 60_000
            }
        }

        /// A stranger's request is dropped unread: not ACKed, its handler never runs, counted
        /// and logged. Before, the port answered any source.
        @Test(arguments: LoopBackendKind.allCases)
        func aStrangersRequestIsDroppedAndCounted(kind: LoopBackendKind) throws {
            let lines = LogLines()
            try withServers(kind, server: Self.configuration(log: lines)) { loop, _, server in
                server.echo(type: 1)
                let stranger = RawSocket(ip: Self.stranger)
                stranger.send(
                    dataDatagram(type: 1, number: 0, messageSize: 4, transactionId: 3, payload: [1, 2, 3, 4]),
                    to: server.address)
                stranger.send(
                    DatagramHeader(kind: .ack, datagramNumber: 0, isFromInitiator: false, transactionId: 3).encoded,
                    to: server.address)
                try runUntil(loop) { server.stats.datagramsIn == 2 && lines.count == 1 }
                try runFor(loop, ms: 200)
                #expect(server.stats.unauthorized == 2 && server.stats.dropped == 2)
                #expect(server.stats.handlerCalls == 0 && server.stats.acksOut == 0 && server.stats.strayAcks == 0)
                #expect(stranger.receive() == nil, "nothing goes back to a stranger")
                #expect(lines.lines[0].contains("2 unauthorized") && lines.lines[0].contains("127.0.0.2"))
            }
        }

        /// A member (the client server on 127.0.0.1) and an admin address are served.
        @Test(arguments: LoopBackendKind.allCases)
        func aMemberAndAnAdminAreServed(kind: LoopBackendKind) throws {
            try withServers(kind, server: Self.configuration()) { loop, client, server in
                server.echo(type: 1)
                let ledger = Ledger()
                client.sendRequest([5, 6, 7], type: 1, to: server.address, callback: ledger.callback(0))
                try runUntil(loop) { ledger.isDone(1) }
                #expect(ledger.reply(0) == [5, 6, 7])

                let admin = RawSocket(ip: Self.admin)
                admin.send(
                    dataDatagram(type: 1, number: 0, messageSize: 2, transactionId: 8, payload: [4, 2]),
                    to: server.address)
                var answers: [[UInt8]] = []
                try runUntil(loop) {
                    while let datagram = admin.receive() { answers.append(datagram) }
                    return answers.contains { $0.count > DatagramHeader.ackSize }
                }
                let reply = try #require(answers.first { $0.count > DatagramHeader.ackSize })
                #expect(Array(reply[DatagramHeader.dataHeaderSize...]) == [4, 2])
                #expect(server.stats.handlerCalls == 2 && server.stats.unauthorized == 0)
            }
        }
    }
}
