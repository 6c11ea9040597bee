@_spi(LoopInternals) import LoopCore
import TestSupport
import Testing

@testable import UdpServer

/// The pieces under the server, as plain values. No loop.
@Suite(.processExclusive) struct Internals {
    @Test func resendTimes() {
        var policy = ResendPolicy(niceness: 0, backoffMs: nil, maxWaitMs: nil, peerIsLocal: true)
        let noJitter: (Int) -> Int = { _ in 0 }
        let maxJitter: (Int) -> Int = { $0 - 1 }
        // Niceness 0: 170 ms, doubled, capped at 200 ms.
        #expect((0..<4).map { policy.resendTimeMs(afterResends: $0, jitter: maxJitter) } == [170, 200, 200, 200])
        // Niceness 1: 100 ms locally (200 otherwise), doubled, plus jitter, capped at 15 s.
        policy.niceness = 1
        #expect(
            (0..<9).map { policy.resendTimeMs(afterResends: $0, jitter: noJitter) }
                == [100, 200, 400, 800, 1600, 3200, 6400, 12_800, 15_000])
        #expect(policy.resendTimeMs(afterResends: 0, jitter: maxJitter) == 199)
        policy.peerIsLocal = false
        #expect(policy.resendTimeMs(afterResends: 1, jitter: noJitter) == 400)
        // The caller's backoff and cap win.
        policy.backoffMs = 30
        #expect((0..<4).map { policy.resendTimeMs(afterResends: $0, jitter: maxJitter) } == [30, 60, 120, 240])
        policy.maxWaitMs = 100
        #expect(policy.resendTimeMs(afterResends: 3, jitter: noJitter) == 100)
        // No overflow, however many resends.
        #expect(policy.resendTimeMs(afterResends: 500, jitter: noJitter) == 100)
        policy.backoffMs = nil
        policy.maxWaitMs = nil
        #expect(policy.resendTimeMs(afterResends: 500, jitter: maxJitter) == 15_000)
        policy.niceness = 0
        #expect(policy.resendTimeMs(afterResends: 64, jitter: noJitter) == 200)
    }

    @Test func windowGapsAndResends() throws {
        let geometry = try DatagramGeometry(datagramSize: 22, maxMessageSize: 1000) // 10-byte payloads
        let message = OutgoingMessage(bytes: [UInt8](repeating: 0, count: 95), hadError: false, geometry: geometry)
        #expect(message.datagramCount == 10)
        var sent: [Int] = []
        while let n = message.nextDatagram(window: 4) {
            message.markSent(n)
            sent.append(n)
        }
        #expect(sent == [0, 1, 2, 3] && message.inFlight == 4)
        #expect(message.markAcked(7) == .bogus) // never sent
        #expect(message.markAcked(0) == .new)
        #expect(message.markAcked(0) == .duplicate)
        // An ACK past a gap: 1 and 2 are taken for lost and go out again first.
        #expect(message.markAcked(3) == .new)
        #expect(message.inFlight == 0)
        sent.removeAll()
        while let n = message.nextDatagram(window: 4) {
            message.markSent(n)
            sent.append(n)
        }
        #expect(sent == [1, 2, 4, 5])
        #expect(message.prepareForResend() == 4)
        #expect(message.nextDatagram(window: 4) == 1)
        message.markAllAcked()
        #expect(message.isFullyAcked && message.nextDatagram(window: 4) == nil)
    }

    @Test func bitSets() {
        for capacity in [1, 63, 64, 65, 200] {
            var set = BitSet(capacity: capacity)
            #expect(set.firstAbsent(from: 0) == 0)
            for i in stride(from: 0, to: capacity, by: 2) {
                let added = set.insert(i)
                #expect(added)
            }
            let again = set.insert(0)
            #expect(!again)
            #expect(set.firstAbsent(from: 0) == (capacity > 1 ? 1 : capacity))
            set.insertAll()
            #expect(set.isFull && set.count == capacity && set.firstAbsent(from: 0) == capacity)
            let removed = set.remove(capacity - 1)
            let removedTwice = set.remove(capacity - 1)
            #expect(removed && !removedTwice)
            #expect(set.firstAbsent(from: 0) == capacity - 1)
        }
    }

    @Test func queuesAndMemory() {
        var queue = FifoQueue<Int>()
        for i in 0..<1000 { queue.append(i) }
        var out: [Int] = []
        while let i = queue.popFirst() {
            out.append(i)
            if i % 3 == 0 && i < 500 { queue.append(1000 + i) }
        }
        #expect(out.count == 1000 + 167 && Array(out.prefix(1000)) == Array(0..<1000) && queue.isEmpty)

        let peer = PeerAddress.loopback(port: 1)
        var finished = FinishedTransactions(capacity: 3)
        let keys = (0..<5).map { TransactionKey(transactionId: UInt32($0), peer: peer, initiatedByUs: false) }
        for (i, key) in keys.enumerated() { finished.insert(key, request: nil, at: Int64(i * 10)) }
        #expect(finished.count == 3 && !finished.contains(keys[1]) && finished.contains(keys[2]))
        finished.expire(before: 35)
        #expect(finished.count == 1 && finished.contains(keys[4]))
    }

    /// The ledger's queues stay proportional to what is held, even behind one old partial
    /// request that never leaves; eviction takes the oldest stalled one, of a peer or of anyone.
    @Test func incomingLedgerStaysBoundedAndEvictsTheOldestStalled() {
        func transaction(_ id: UInt32, ip: UInt32, at now: Int64) -> Transaction {
            Transaction(
                key: TransactionKey(transactionId: id, peer: PeerAddress(ip: ip, port: 9), initiatedByUs: false),
                type: 1, niceness: 0, timeoutMs: 60_000, serial: UInt64(id), phase: .receivingRequest, now: now,
                resendPolicy: ResendPolicy(niceness: 0, backoffMs: nil, maxWaitMs: nil, peerIsLocal: true),
                geometry: .lan)
        }
        var ledger = IncomingLedger()
        let old = transaction(0, ip: 1, at: 0)
        ledger.added(old)
        for id in 1...10_000 {
            let t = transaction(UInt32(id), ip: 1, at: Int64(id))
            ledger.added(t)
            t.phase = .finished
            ledger.removed(t)
        }
        #expect(ledger.holding(of: 1).slots == 1)
        #expect(ledger.queuedEntries.all <= 2 * 1 + 64 + 1 && ledger.queuedEntries.byPeer <= 2 * 1 + 64 + 1)
        let fresh = transaction(20_000, ip: 2, at: 20_000)
        ledger.added(fresh)
        let stalled = { (t: Transaction) in t.lastProgress < 10_000 }
        #expect(ledger.evictionCandidate(of: 2, isStalled: stalled) == nil, "still progressing")
        #expect(ledger.evictionCandidate(of: nil, isStalled: stalled) === old)
        ledger.reserved(100, for: 2)
        ledger.released(100, for: 2)
        #expect(ledger.holding(of: 2).bytes == 0 && ledger.peerCount == 2)
    }

    /// One line per interval at most, naming the address that caused most, and a
    /// bounded number of addresses remembered however many there are.
    @Test func dropLogIsRateLimitedAndBounded() {
        var log = DropLog()
        #expect(log.line(at: 0, intervalMs: 1_000) == nil, "nothing to say")
        // 7 itself once, and in place of every hundredth address: 101 times.
        for ip in 0..<10_000 { log.note(.peerSlotShare, from: UInt32(ip % 100 == 0 ? 7 : ip)) }
        let first = log.line(at: 5, intervalMs: 1_000)
        #expect(first?.contains("10000 new requests") == true && first?.contains("0.0.0.7: 101") == true)
        log.note(.evicted, from: 7)
        #expect(log.line(at: 500, intervalMs: 1_000) == nil)
        let second = log.line(at: 1_005, intervalMs: 1_000)
        #expect(second?.hasPrefix("udp: dropped in 1 s: 1 stalled partial requests evicted") == true)
    }

    /// Peers that acknowledged are remembered for a while and within a capacity.
    @Test func acknowledgingPeersAreBounded() {
        var peers = AcknowledgingPeers(capacity: 100, memoryMs: 1_000)
        for port in 0..<10_000 { peers.acknowledged(by: PeerAddress(ip: 1, port: UInt16(port)), at: 0) }
        #expect(peers.count <= 100)
        #expect(peers.contains(PeerAddress(ip: 1, port: 9_999), at: 999))
        #expect(!peers.contains(PeerAddress(ip: 1, port: 9_999), at: 1_000))
        #expect(!peers.contains(PeerAddress(ip: 1, port: 0), at: 0), "the oldest went first")
    }

    @Test func lossInjectorIsDeterministic() {
        let header = DatagramHeader(
            kind: .data(messageSize: 0), datagramNumber: 0, isFromInitiator: true, transactionId: 0)
        let datagram = OutgoingDatagram(header: header, size: 12, destination: .loopback(port: 1))
        func fates(_ mode: LossInjector.Mode, _ n: Int) -> [DatagramFate] {
            let injector = LossInjector(mode)
            return (0..<n).map { _ in injector.fate(of: datagram) }
        }
        #expect(fates(.dropEvery(3), 6) == [.deliver, .deliver, .drop, .deliver, .deliver, .drop])
        #expect(fates(.duplicateEvery(2), 4) == [.deliver, .duplicate, .deliver, .duplicate])
        #expect(fates(.reorderEvery(1), 2) == [.delay, .delay])
        #expect(fates(.wouldBlockEvery(2), 2) == [.deliver, .wouldBlock])
        let a = fates(.random(seed: 7, rate: 0.2), 10_000)
        #expect(a == fates(.random(seed: 7, rate: 0.2), 10_000))
        #expect(a != fates(.random(seed: 8, rate: 0.2), 10_000))
        let share = Double(a.filter { $0 != .deliver }.count) / Double(a.count)
        #expect(abs(share - 0.2) < 0.02)
        #expect(Set(a) == [.deliver, .drop, .duplicate, .delay])
        #expect(fates(.random(seed: 7, rate: 0), 1000).allSatisfy { $0 == .deliver })
        let ackFree = LossInjector(.dropEvery(1), includesAcks: false)
        let ack = OutgoingDatagram(
            header: DatagramHeader(kind: .ack, datagramNumber: 0, isFromInitiator: true, transactionId: 0),
            size: 8, destination: .loopback(port: 1))
        #expect(ackFree.fate(of: ack) == .deliver && ackFree.fate(of: datagram) == .drop)
    }

    @Test func statsFieldsNameEveryCounter() {
        var stats = UdpServerStats()
        stats.corrupt = 1
        stats.strayAcks = 2
        stats.noSlotDrops = 4
        let names = stats.fields.map(\.0)
        #expect(Set(names).count == names.count)
        #expect(stats.dropped == 7)
        #expect(stats.fields.first { $0.0 == "dropped" }?.1 == 7)
        #expect(stats.description.contains("corrupt=1 ") && stats.description.contains("noSlotDrops=4 "))
        // Every stored counter appears in `fields` (the computed total too).
        #expect(names.count == Mirror(reflecting: stats).children.count + 1)
    }

    @Test func splitMixKnownValues() {
        // The reference sequence for seed 0.
        var random = SplitMix64(seed: 0)
        #expect(
            [random.next(), random.next(), random.next()]
                == [0xe220_a839_7b1d_cdaf, 0x6e78_9e6a_a1b9_65f4, 0x06c4_5d18_8009_454f])
    }
}
