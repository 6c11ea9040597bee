/// A deterministic `DatagramFilter` for tests: drops, duplicates, reorders or
/// refuses every Nth datagram, or a seeded random share of them.
package final class LossInjector: DatagramFilter {
    package enum Mode: Hashable, Sendable {
        case dropEvery(Int)
        case duplicateEvery(Int)
        case reorderEvery(Int)
        /// Every Nth send attempt fails with a simulated `EAGAIN`.
        case wouldBlockEvery(Int)
        /// Each datagram is dropped, duplicated or delayed with probability `rate`
        /// (the three equally likely), from a `SplitMix64` seeded with `seed`.
        case random(seed: UInt64, rate: Double)
    }

    package let mode: Mode
    /// Whether ACKs are subject to the mode too (data datagrams always are).
    package let includesAcks: Bool

    package private(set) var seen = 0
    package private(set) var dropped = 0
    package private(set) var duplicated = 0
    package private(set) var delayed = 0
    package private(set) var refused = 0

    private var generator: SplitMix64

    package init(_ mode: Mode, includesAcks: Bool = true) {
        switch mode {
        case .dropEvery(let n), .duplicateEvery(let n), .reorderEvery(let n), .wouldBlockEvery(let n):
            precondition(n >= 1, "every Nth needs N >= 1")
        case .random(_, let rate):
            precondition((0...1).contains(rate), "rate must be within 0...1")
        }
        self.mode = mode
        self.includesAcks = includesAcks
        if case .random(let seed, _) = mode {
            generator = SplitMix64(seed: seed)
        } else {
            generator = SplitMix64(seed: 0)
        }
    }

    /// Datagrams whose fate was not `.deliver`.
    package var affected: Int { dropped + duplicated + delayed + refused }

    package func fate(of datagram: OutgoingDatagram) -> DatagramFate {
        // A copy it made is sent: the mode counts each datagram once.
        if datagram.isSecondCopy || (datagram.header.isAck && !includesAcks) { return .deliver }
        seen += 1
        let fate: DatagramFate
        switch mode {
        case .dropEvery(let n): fate = seen % n == 0 ? .drop : .deliver
        case .duplicateEvery(let n): fate = seen % n == 0 ? .duplicate : .deliver
        case .reorderEvery(let n): fate = seen % n == 0 ? .delay : .deliver
        case .wouldBlockEvery(let n): fate = seen % n == 0 ? .wouldBlock : .deliver
        case .random(_, let rate):
            let roll = Double(generator.next() >> 11) / Double(1 << 53)
            if roll >= rate {
                fate = .deliver
            } else {
                fate = [DatagramFate.drop, .duplicate, .delay][Int(generator.next() % 3)]
            }
        }
        switch fate {
        case .drop: dropped += 1
        case .duplicate: duplicated += 1
        case .delay: delayed += 1
        case .wouldBlock: refused += 1
        case .deliver: break
        }
        return fate
    }
}
