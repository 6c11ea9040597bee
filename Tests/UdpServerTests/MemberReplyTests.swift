import TestSupport
import Testing

@testable import UdpServer

/// Drops the first `count` reply datagrams (data sent by the responder), every other datagram goes.
final class ReplyDropper: DatagramFilter {
    var remaining: Int
    private(set) var dropped = 0

    init(count: Int) { remaining = count }

    func fate(of datagram: OutgoingDatagram) -> DatagramFate {
        guard !datagram.header.isAck, !datagram.header.isFromInitiator, remaining > 0 else { return .deliver }
        remaining -= 1
        dropped += 1
        return .drop
    }
}

extension UdpServerLoopTests {
    /// A requester that does not poke: an original whose request is fully ACKed sends nothing
    /// for 30 s, then the whole request again (UdpServer.cpp `readTimeoutPoll`, "resend it
    /// ALL"). Here a raw socket on 127.0.0.1, a member, does just that, with the server's
    /// stranger hold and finished memory shortened so that the pause outlasts both.
    @Suite struct MemberReplies {
        static let geometry = DatagramGeometry.loopback
        static let member: UInt32 = 0x7f00_0001

        static func configuration(dropper: ReplyDropper, _ adjust: (inout UdpServerConfiguration) -> Void = { _ in })
            -> UdpServerConfiguration
        {
            .loopback {
                $0.admission = UdpAdmission(members: [member], localNetworks: [.init(0x7f00_0003, length: 32)])
                $0.datagramFilter = dropper
                $0.strangerReplyHoldMs = 300
                $0.finishedMemoryMs = 300
                $0.log = nil
                adjust(&$0)
            }
        }

        /// A reply 100 bytes long to a 4-byte urgent request: more than three times what the
        /// requester sent, so the reflection bound would hold it after one resend.
        static func serveLargerReplies(on server: UdpServer) {
            server.echo(type: 1) { _ in pattern(100, seed: 2) }
        }

        static let request = dataDatagram(type: 1, number: 0, messageSize: 4, transactionId: 11, payload: [1, 2, 3, 4])

        /// Reply data the peer received so far (its ACKs from the server left aside).
        static func replyData(_ peer: RawSocket, into seen: inout [[UInt8]]) -> Bool {
            while let datagram = peer.receive() {
                if datagram.count > DatagramHeader.ackSize { seen.append(datagram) }
            }
            return !seen.isEmpty
        }

        /// Its first three reply datagrams lost, a member that never asks again still gets the
        /// reply by the server's resends. Before, after the first resend the reply was held
        /// for the requester to ask again, then given up (`repliesAbandoned`).
        @Test(arguments: LoopBackendKind.allCases)
        func aMemberThatNeverPokesGetsItsReplyByResends(kind: LoopBackendKind) throws {
            let dropper = ReplyDropper(count: 3)
            try withServers(kind, server: Self.configuration(dropper: dropper)) { loop, _, server in
                Self.serveLargerReplies(on: server)
                let peer = RawSocket(ip: Self.member)
                peer.send(Self.request, to: server.address)
                var replies: [[UInt8]] = []
                try runUntil(loop) { Self.replyData(peer, into: &replies) || server.stats.repliesAbandoned > 0 }
                #expect(server.stats.repliesAbandoned == 0)
                let reply = try #require(replies.first)
                #expect(Array(reply[DatagramHeader.dataHeaderSize...]) == pattern(100, seed: 2))
                #expect(dropper.dropped == 3 && server.stats.handlerCalls == 1)
            }
        }

        /// Its reply lost for a while, a member sends its whole request again after a pause
        /// longer than the stranger hold and the finished memory (the original's 30 s against
        /// the port's 5 s and 10 s): the copy finds the reply still going out, and the handler
        /// runs once. Before, the reply was given up and forgotten, and the copy was served anew.
        @Test(arguments: LoopBackendKind.allCases)
        func aWholeResendAfterTheFinishedMemoryIsNotServedTwice(kind: LoopBackendKind) throws {
            let dropper = ReplyDropper(count: 6)
            try withServers(kind, server: Self.configuration(dropper: dropper)) { loop, _, server in
                Self.serveLargerReplies(on: server)
                let peer = RawSocket(ip: Self.member)
                peer.send(Self.request, to: server.address)
                try runUntil(loop) { server.stats.handlerCalls == 1 }
                try runUntil(loop) { dropper.dropped >= 3 || server.stats.repliesAbandoned > 0 }
                try runFor(loop, ms: server.configuration.finishedMemoryMs + 200)
                peer.send(Self.request, to: server.address)
                var replies: [[UInt8]] = []
                try runUntil(loop) {
                    (Self.replyData(peer, into: &replies) && server.stats.duplicates >= 1)
                        || server.stats.handlerCalls > 1
                }
                #expect(server.stats.handlerCalls == 1 && server.stats.repliesAbandoned == 0)
                #expect(server.stats.duplicates >= 1, "the copy joined the reply in progress")
                peer.send(
                    DatagramHeader(kind: .ack, datagramNumber: 0, isFromInitiator: true, transactionId: 11).encoded,
                    to: server.address)
                try runUntil(loop) { server.stats.incomingSlots == 0 }
            }
        }

        /// A reply to a member lives as long as the member keeps talking, as the original's
        /// times out from its last read: copies of the request every 300 ms keep a reply whose
        /// datagrams are all lost alive past its 1 s timeout, and it arrives once the loss ends.
        /// Before, it timed out 1 s after it began, and the copies were late duplicates.
        @Test(arguments: LoopBackendKind.allCases)
        func aMembersReplyTimesOutFromItsLastWord(kind: LoopBackendKind) throws {
            let dropper = ReplyDropper(count: .max)
            let config = Self.configuration(dropper: dropper) { $0.incomingTimeoutMs = 1_000 }
            try withServers(kind, server: config) { loop, _, server in
                Self.serveLargerReplies(on: server)
                let peer = RawSocket(ip: Self.member)
                peer.send(Self.request, to: server.address)
                try runUntil(loop) { server.stats.handlerCalls == 1 }
                for copy in 1...8 {
                    try runFor(loop, ms: 300)
                    peer.send(Self.request, to: server.address)
                    try runUntil(loop) {
                        server.stats.duplicates + server.stats.lateDuplicates + server.stats.handlerCalls > copy
                    }
                }
                #expect(server.stats.timeouts == 0 && server.stats.incomingSlots == 1)
                dropper.remaining = 0
                var replies: [[UInt8]] = []
                try runUntil(loop) { Self.replyData(peer, into: &replies) || server.stats.incomingSlots == 0 }
                #expect(!replies.isEmpty && server.stats.handlerCalls == 1)
            }
        }

        /// An address the rule admits but that is not a member (a local network's) keeps the
        /// reflection bound: one reply datagram and one resend, then given up.
        @Test(arguments: LoopBackendKind.allCases)
        func anAdmittedNonMemberKeepsTheReflectionBound(kind: LoopBackendKind) throws {
            let dropper = ReplyDropper(count: 0)
            try withServers(kind, server: Self.configuration(dropper: dropper)) { loop, _, server in
                Self.serveLargerReplies(on: server)
                let local = RawSocket(ip: 0x7f00_0003)
                local.send(Self.request, to: server.address)
                try runUntil(loop) { server.stats.repliesAbandoned == 1 }
                var replies: [[UInt8]] = []
                _ = Self.replyData(local, into: &replies)
                #expect(replies.count == 2, "the first datagram and one resend")
            }
        }
    }
}
