import TestSupport
import Testing

@testable import UdpServer

extension UdpServerLoopTests {
    /// Loss, duplication and reordering between two servers in one process, on
    /// both directions and on ACKs as well as data: every request ends exactly
    /// once, and every reply that arrives is intact.
    @Suite struct Loss {
        static let modes: [LossInjector.Mode] = [
            .dropEvery(7), .duplicateEvery(5), .reorderEvery(4), .random(seed: 0x5eed, rate: 0.2),
        ]

        @Test(arguments: LoopBackendKind.allCases, modes)
        func everyRequestEndsOnceAndIntact(kind: LoopBackendKind, mode: LossInjector.Mode) throws {
            let clientFilter = LossInjector(mode)
            let serverFilter: LossInjector
            if case .random(let seed, let rate) = mode {
                serverFilter = LossInjector(.random(seed: seed &+ 1, rate: rate))
            } else {
                serverFilter = LossInjector(mode)
            }
            let client = UdpServerConfiguration.loopback {
                $0.datagramFilter = clientFilter
                $0.randomSeed = 1
            }
            let server = UdpServerConfiguration.loopback {
                $0.datagramFilter = serverFilter
                $0.randomSeed = 2
            }
            try withServers(kind, client: client, server: server) { loop, client, server in
                server.echo(type: 1) { Array($0.reversed()) }
                let sizes = [0, 1, 16_388, 16_389, 100_000, 300_000] + (0..<24).map { $0 * 1_234 }
                let ledger = Ledger()
                for (i, size) in sizes.enumerated() {
                    client.sendRequest(
                        pattern(size, seed: i), type: 1, to: server.address, timeoutMs: 30_000,
                        niceness: i % 3 == 0 ? 1 : 0, callback: ledger.callback(i))
                }
                try runUntil(loop, timeoutMs: 40_000) { ledger.isDone(sizes.count) }
                try runFor(loop, ms: 50)
                ledger.expectExactlyOnce(sizes.count)
                for (i, size) in sizes.enumerated() {
                    #expect(
                        ledger.reply(i) == Array(pattern(size, seed: i).reversed()),
                        "request \(i) of \(size) bytes: \(ledger.error(i).map { "\($0)" } ?? "a reply")")
                }
                #expect(clientFilter.affected > 0 && serverFilter.affected > 0)
                // Each request ran its handler once, duplicates and resends notwithstanding.
                #expect(server.stats.handlerCalls == sizes.count)
                try runUntil(loop, timeoutMs: 20_000) {
                    server.stats.incomingSlots == 0 && client.stats.outgoingSlots == 0
                }
                #expect(server.bufferedBytes == 0 && client.bufferedBytes == 0)
            }
        }
    }
}
