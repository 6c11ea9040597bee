import Glibc
import TestSupport
import Testing

@testable import UdpServer

extension UdpServerLoopTests {
    /// The datagram size is chosen per peer, as the original's `UdpSlot::connect` does
    /// (UdpSlot.cpp:213-218): 16400 bytes to this host's own addresses (`isMyIp`: 127.0.0.1,
    /// the node's own IPs), 1462 to every other. 127.0.0.2 is this machine too, but not an
    /// address the server calls its own: it stands for a peer on another host.
    @Suite struct DatagramSizes {
        static let sizes = [1, 1450, 1451, 65_536, 1 << 20]

        /// Servers at 127.0.0.1 (`near`, `here`) and at 127.0.0.2 (`far`), each with the
        /// default rule and a recorder of what it sends. `far` stands for another host: its
        /// own address is 127.0.0.2 alone (127.0.0.1 would be this host to it).
        struct Trio {
            let here: UdpServer
            let near: UdpServer
            let far: UdpServer
            let recorders: [PeerAddress: SizeRecorder]
        }

        static func withTrio<R>(
            _ kind: LoopBackendKind, far farConfiguration: UdpServerConfiguration = .elsewhere,
            _ body: (Loop, Trio) throws -> R
        ) throws -> R {
            try withLoop(kind) { loop in
                var servers: [UdpServer] = []
                var recorders: [PeerAddress: SizeRecorder] = [:]
                for base in [UdpServerConfiguration(), UdpServerConfiguration(), farConfiguration] {
                    var configuration = base
                    let recorder = SizeRecorder()
                    configuration.datagramFilter = recorder
                    let server = UdpServer(loop: loop, configuration: configuration)
                    try server.start()
                    servers.append(server)
                    recorders[server.boundAddress!] = recorder
                }
                defer { for server in servers { server.shutdown(urgent: true) } }
                for server in servers { server.echo(type: 9) { Array($0.reversed()) } }
                return try body(loop, Trio(here: servers[0], near: servers[1], far: servers[2], recorders: recorders))
            }
        }

        /// Sends every size from `from` to `to` (the reply comes back at the same size) and
        /// checks each arrives whole both ways.
        static func roundTrips(_ loop: Loop, from: UdpServer, to: UdpServer) throws {
            let ledger = Ledger()
            for (i, size) in sizes.enumerated() {
                from.sendRequest(
                    pattern(size, seed: i), type: 9, to: to.boundAddress!, niceness: 0, callback: ledger.callback(i))
            }
            try runUntil(loop, timeoutMs: 60_000) { ledger.isDone(sizes.count) }
            ledger.expectExactlyOnce(sizes.count)
            for (i, size) in sizes.enumerated() {
                let reply = ledger.reply(i) ?? []
                #expect(sameBytes(reply, pattern(size, seed: i).reversed()), "\(size) bytes: \(ledger.results[i]!)")
            }
        }

        /// To 127.0.0.2 and back, 1462-byte datagrams both ways; to 127.0.0.1, 16400. Each
        /// message in exactly as many datagrams as its size needs at that size.
        @Test(arguments: LoopBackendKind.allCases)
        func theSizeFollowsThePeersAddress(kind: LoopBackendKind) throws {
            try Self.withTrio(kind) { loop, trio in
                try Self.roundTrips(loop, from: trio.here, to: trio.far)
                try Self.roundTrips(loop, from: trio.far, to: trio.here)
                try Self.roundTrips(loop, from: trio.here, to: trio.near)
                try Self.roundTrips(loop, from: trio.near, to: trio.here)
                let here = trio.here.boundAddress!
                let near = trio.near.boundAddress!
                let far = trio.far.boundAddress!
                for (from, to, datagramSize) in [
                    (here, far, 1462), (far, here, 1462), (here, near, 16_400), (near, here, 16_400),
                ] {
                    let sent = trio.recorders[from]!.sent(to: to)
                    #expect(sent.largest == datagramSize, "\(from) to \(to)")
                    // Requests and replies alike: every size once each way.
                    let payload = datagramSize - DatagramHeader.dataHeaderSize
                    for size in Self.sizes {
                        let count = (size + payload - 1) / payload
                        #expect(sent.datagrams[size] == count, "\(size) bytes from \(from) to \(to)")
                    }
                }
            }
        }

        /// A peer at 127.0.0.2 using 16400 everywhere (the port's rule before this one, or an
        /// original that counts it among its own addresses): up to 1450 bytes fits one datagram
        /// either way and crosses; from 1451 on each side cuts the message differently, and
        /// the receiver drops what it takes for malformed datagrams, both ways.
        @Test(arguments: LoopBackendKind.allCases)
        func aPeerCuttingOtherwiseCannotExchangeMoreThan1450Bytes(kind: LoopBackendKind) throws {
            var cuttingOtherwise = UdpServerConfiguration.loopback
            cuttingOtherwise.bindAddress = "127.0.0.2"
            try Self.withTrio(kind, far: cuttingOtherwise) { loop, trio in
                let ledger = Ledger()
                let cases: [(from: UdpServer, to: UdpServer, size: Int)] = [
                    (trio.here, trio.far, 1450), (trio.far, trio.here, 1450),
                    (trio.here, trio.far, 1451), (trio.far, trio.here, 1451),
                ]
                for (i, c) in cases.enumerated() {
                    c.from.sendRequest(
                        pattern(c.size, seed: i), type: 9, to: c.to.boundAddress!, timeoutMs: 1_500, niceness: 0,
                        callback: ledger.callback(i))
                }
                try runUntil(loop) { ledger.isDone(cases.count) }
                #expect(ledger.reply(0)?.count == 1450 && ledger.reply(1)?.count == 1450)
                #expect(ledger.error(2) == .timedOut && ledger.error(3) == .timedOut)
                #expect(trio.here.stats.corrupt > 0 && trio.far.stats.corrupt > 0)
            }
        }

        /// Whose address is the server's own: 127.0.0.1, `ownAddresses`, a specific bind
        /// address (not 0.0.0.0); `ownAddressDatagramSize = nil` is one size for all.
        @Test(arguments: LoopBackendKind.allCases)
        func ownAddressesComeFromTheConfiguration(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                func sizes(_ adjust: (inout UdpServerConfiguration) -> Void) -> [Int] {
                    var configuration = UdpServerConfiguration()
                    adjust(&configuration)
                    let server = UdpServer(loop: loop, configuration: configuration)
                    return [0x7f00_0001, 0x7f00_0002, 0x7f00_0003, 0x0a00_0001].map {
                        server.geometry(toward: $0).datagramSize
                    }
                }
                #expect(sizes { _ in } == [16_400, 1462, 1462, 1462])
                #expect(sizes { $0.bindAddress = "0.0.0.0" } == [16_400, 1462, 1462, 1462])
                #expect(sizes { $0.bindAddress = "127.0.0.3" } == [16_400, 1462, 16_400, 1462])
                #expect(sizes { $0.ownAddresses += ["10.0.0.1", "127.0.0.2"] } == [16_400, 16_400, 1462, 16_400])
                #expect(
                    sizes {
                        $0.ownAddresses = []
                        $0.bindAddress = "127.0.0.2"
                    } == [1462, 16_400, 1462, 1462])
                #expect(
                    sizes {
                        $0.ownAddresses = []
                        $0.bindAddress = "0.0.0.0"
                    } == [1462, 1462, 1462, 1462])
                #expect(sizes { $0.ownAddressDatagramSize = nil } == [1462, 1462, 1462, 1462])
                #expect(
                    sizes {
                        $0.datagramSize = 100
                        $0.ownAddressDatagramSize = 200
                        $0.maxMessageSize = 1 << 20
                    } == [200, 100, 100, 100])
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func badOwnAddressSettingsAreRefused(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let cases: [((inout UdpServerConfiguration) -> Void, ConfigurationError)] = [
                    ({ $0.ownAddressDatagramSize = 12 }, .ownAddressDatagramSize(12)),
                    ({ $0.ownAddressDatagramSize = 70_000 }, .ownAddressDatagramSize(70_000)),
                    ({ $0.ownAddresses = ["127.0.0.1", "node7"] }, .ownAddress("node7")),
                    // 1-byte payloads to its own addresses: the largest message needs too many datagrams.
                    ({ $0.ownAddressDatagramSize = 13 }, .maxMessageSize(DatagramGeometry.defaultMaxMessageSize)),
                ]
                for (adjust, expected) in cases {
                    var configuration = UdpServerConfiguration()
                    adjust(&configuration)
                    #expect(throws: UdpServerError.configuration(expected)) {
                        try UdpServer(loop: loop, configuration: configuration).start()
                    }
                }
            }
        }
    }
}

extension UdpServerConfiguration {
    /// The default rule for a server at 127.0.0.2 that stands for another host: its own
    /// address is its bind address alone.
    static var elsewhere: UdpServerConfiguration {
        var c = UdpServerConfiguration()
        c.bindAddress = "127.0.0.2"
        c.ownAddresses = []
        return c
    }
}

/// Records the data datagrams a server sends, by destination: the largest, and how many
/// distinct datagrams each message size took (a resent one counts once).
final class SizeRecorder: DatagramFilter {
    struct Sent {
        var largest = 0
        var numbers: [Int: Set<UInt32>] = [:]
        var datagrams: [Int: Int] { numbers.mapValues(\.count) }
    }
    private var byDestination: [PeerAddress: Sent] = [:]

    func sent(to peer: PeerAddress) -> Sent { byDestination[peer] ?? Sent() }

    func fate(of datagram: OutgoingDatagram) -> DatagramFate {
        guard case .data(let size) = datagram.header.kind, !datagram.isSecondCopy else { return .deliver }
        var sent = byDestination[datagram.destination] ?? Sent()
        sent.largest = max(sent.largest, datagram.size)
        sent.numbers[Int(size), default: []].insert(datagram.header.datagramNumber)
        byDestination[datagram.destination] = sent
        return .deliver
    }
}
