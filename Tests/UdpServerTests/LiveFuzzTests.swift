import TestSupport
import Testing

@testable import UdpServer

extension UdpServerLoopTests {
    /// Thousands of random and mutated datagrams from one peer at a live server:
    /// all counted, nothing crashes or leaks, and it still answers afterwards.
    @Suite struct LiveFuzz {
        @Test(arguments: LoopBackendKind.allCases)
        func serverSurvivesGarbage(kind: LoopBackendKind) throws {
            let server = UdpServerConfiguration.loopback {
                $0.incomingTimeoutMs = 300
                $0.maxBufferedIncomingBytes = 8 << 20
            }
            try withServers(kind, server: server) { loop, client, server in
                server.echo(type: 1)
                let attacker = RawSocket(receiveBufferSize: 1 << 20)
                let geometry = DatagramGeometry.loopback
                var random = SplitMix64(seed: 0xf022)
                let total = 4000
                var sent = 0
                var surelyCorrupt = 0
                while sent < total {
                    // Small batches: even a default-sized receive buffer (rmem_max 208 KiB) holds one.
                    for _ in 0..<10 {
                        var d: [UInt8]
                        switch sent % 4 {
                        case 0: // noise, sometimes oversized
                            let length = random.next() % 8 == 0 ? Int(random.next() % 20_000) : Int(random.next() % 40)
                            d = (0..<length).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                            if length < 8 || length > geometry.datagramSize { surelyCorrupt += 1 }
                        case 1: // a valid request or reply datagram with some bits flipped
                            let size = Int(random.next() % 60_000)
                            let number = Int(random.next() % UInt64(geometry.datagramCount(forMessageSize: size)))
                            let payload = [UInt8](
                                repeating: 3,
                                count: geometry.payloadRange(
                                    ofDatagram: number,
                                    messageSize: size
                                ).count)
                            d = dataDatagram(
                                type: UInt8(random.next() % 3), number: UInt32(number),
                                messageSize: UInt32(size),
                                transactionId: UInt32(random.next() % 5000),
                                fromInitiator: random.next() % 4 != 0, nice: random.next() % 2 == 0,
                                payload: payload)
                            for _ in 0..<Int(random.next() % 3) {
                                let i = Int(random.next() % UInt64(min(d.count, 16)))
                                d[i] ^= UInt8(1) << UInt8(random.next() % 8)
                            }
                        case 2: // ACKs and cancel ACKs for anything
                            d =
                                DatagramHeader(
                                    kind: .ack, isCancel: random.next() % 5 == 0,
                                    datagramNumber: UInt32(random.next() % 8),
                                    isFromInitiator: random.next() % 2 == 0,
                                    transactionId: UInt32(random.next() % 5000)
                                ).encoded
                        default: // a lie about the size
                            d = dataDatagram(
                                type: 1, number: 0, messageSize: UInt32(truncatingIfNeeded: random.next()),
                                transactionId: UInt32(random.next() % 5000),
                                payload: [UInt8](repeating: 1, count: geometry.payloadSize))
                        }
                        attacker.send(d, to: server.address)
                        sent += 1
                    }
                    // Let the server catch up so the kernel drops nothing; throw away its answers.
                    try runUntil(loop) {
                        attacker.drain()
                        return server.stats.datagramsIn == sent
                    }
                }
                let stats = server.stats
                #expect(stats.datagramsIn == total)
                #expect(stats.corrupt >= surelyCorrupt)
                #expect(stats.strayAcks > 0 && stats.strayReplies > 0)
                #expect(stats.memoryDrops > 0 || stats.corrupt > surelyCorrupt)

                // Every transaction the garbage started times out; nothing stays behind.
                try runUntil(loop, timeoutMs: 20_000) {
                    attacker.drain()
                    return server.stats.incomingSlots == 0 && server.stats.outgoingSlots == 0
                }
                #expect(server.bufferedBytes == 0)

                let ledger = Ledger()
                client.sendRequest(
                    Array("ping".utf8), type: 1, to: server.address, niceness: 0,
                    callback: ledger.callback(0))
                try runUntil(loop) { ledger.isDone(1) }
                #expect(ledger.reply(0) == Array("ping".utf8))
            }
        }
    }
}
