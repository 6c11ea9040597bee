/// The order in which a pass visits ready descriptors: the order they got their
/// first registration of the kind, a removed descriptor's place taken by the
/// last one (the original's `s_readFds`/`s_writeFds` lists). It is the loop's,
/// not the backend's: select reports in ascending fd order, epoll in ready-list
/// order, and both dispatch in this one.
struct DispatchOrder {
    private var entries: [DescriptorEntry] = []
    private let kind: Registration.Kind

    init(_ kind: Registration.Kind) { self.kind = kind }

    private func rank(_ e: DescriptorEntry) -> Int { kind == .read ? e.readRank : e.writeRank }

    private func setRank(_ e: DescriptorEntry, _ rank: Int) {
        if kind == .read { e.readRank = rank } else { e.writeRank = rank }
    }

    /// The entry's chain of this kind just became non-empty.
    mutating func append(_ e: DescriptorEntry) {
        guard rank(e) < 0 else { return }
        setRank(e, entries.count)
        entries.append(e)
    }

    /// The entry's chain of this kind just became empty.
    mutating func remove(_ e: DescriptorEntry) {
        let i = rank(e)
        guard i >= 0, i < entries.count, entries[i] === e else { return }
        let last = entries.removeLast()
        if last !== e {
            entries[i] = last
            setRank(last, i)
        }
        setRank(e, -1)
    }

    mutating func removeAll() {
        for e in entries { setRank(e, -1) }
        entries = []
    }
}
