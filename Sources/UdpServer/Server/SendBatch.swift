import Glibc
import Sockets

/// Datagrams gathered to leave in one `sendmmsg`. Each is assembled in place in
/// `slot` and then committed with what it is for, so that if the socket will not
/// take it the server knows whether to try again (an ACK or a message's datagram)
/// or to let it go (a loose ACK, as when a single send would have blocked).
final class SendBatch {
    /// What the server does with a datagram the socket would not take.
    enum IfBlocked {
        /// Lost, as a single send that would block: cancel ACKs, late-duplicate ACKs,
        /// reply pokes, datagrams a filter held back. Their peers ask again.
        case letGo
        /// The transaction sends this ACK later (its pending ACKs).
        case ackLater(UInt32)
        /// This datagram of this message goes out again when the socket has room.
        case sendLater(OutgoingMessage, Int)
    }

    struct Entry {
        let offset: Int
        let length: Int
        let header: DatagramHeader
        let destination: PeerAddress
        /// Whose datagram this is (it counts what it sent), if anyone's.
        let transaction: Transaction?
        let ifBlocked: IfBlocked
    }

    let capacity: Int
    private let datagramSize: Int
    private let memory: OffsetMemory
    private var arena: UnsafeMutableRawBufferPointer { memory.bytes }
    private var used = 0
    private(set) var entries: [Entry] = []
    /// The loop clock when the first entry was committed.
    private(set) var firstCommitMs: Int64 = 0

    // What one flush hands the kernel: datagrams in order, a filter's duplicates twice.
    let bases: UnsafeMutableBufferPointer<UnsafeRawPointer?>
    let lengths: UnsafeMutableBufferPointer<UInt32>
    let destinations: UnsafeMutableBufferPointer<sockaddr_in>
    /// The entry each of those is (`~index` for a second copy), so a short send knows what it left.
    let entryIndices: UnsafeMutableBufferPointer<Int>
    /// Room for each entry twice (every one duplicated by a filter).
    var vectorCapacity: Int { bases.count }

    init(capacity: Int, datagramSize: Int) {
        self.capacity = capacity
        self.datagramSize = datagramSize
        memory = OffsetMemory(byteCount: capacity * datagramSize)
        entries.reserveCapacity(capacity)
        bases = .allocate(capacity: 2 * capacity)
        bases.initialize(repeating: nil)
        lengths = .allocate(capacity: 2 * capacity)
        lengths.initialize(repeating: 0)
        destinations = .allocate(capacity: 2 * capacity)
        destinations.initialize(repeating: sockaddr_in())
        entryIndices = .allocate(capacity: 2 * capacity)
        entryIndices.initialize(repeating: 0)
    }

    deinit {
        memory.deallocate()
        bases.deallocate()
        lengths.deallocate()
        destinations.deallocate()
        entryIndices.deallocate()
    }

    var isEmpty: Bool { entries.isEmpty }

    /// No room for another datagram of the largest size.
    var isFull: Bool { entries.count == capacity || arena.count - used < datagramSize }

    /// Where the next datagram is assembled: room for the largest one.
    var slot: UnsafeMutableRawBufferPointer {
        precondition(!isFull, "flush a full batch before assembling another datagram")
        return UnsafeMutableRawBufferPointer(rebasing: arena[used..<used + datagramSize])
    }

    /// Takes the first `length` bytes of `slot` as the next datagram.
    func commit(
        length: Int, header: DatagramHeader, to destination: PeerAddress, transaction: Transaction?,
        ifBlocked: IfBlocked, now: @autoclosure () -> Int64
    ) {
        precondition(length <= datagramSize && !isFull)
        if entries.isEmpty { firstCommitMs = now() }
        entries.append(
            Entry(
                offset: used, length: length, header: header, destination: destination,
                transaction: transaction, ifBlocked: ifBlocked))
        used += (length + 7) & ~7
    }

    func bytes(of entry: Entry) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: arena[entry.offset..<entry.offset + entry.length])
    }

    func removeAll() {
        entries.removeAll(keepingCapacity: true)
        used = 0
    }
}

extension DatagramSocket {
    /// Sends datagrams `range` of `batch`'s vector, in order (`sendmmsg`); never blocks.
    /// `.done(k)` with k short of the range: the kernel stopped at datagram k, and a call
    /// starting there says why.
    func send(_ batch: SendBatch, _ range: Range<Int>) -> BatchOutcome {
        send(
            bases: UnsafePointer(batch.bases.baseAddress! + range.lowerBound),
            lengths: batch.lengths.baseAddress! + range.lowerBound,
            destinations: batch.destinations.baseAddress! + range.lowerBound, count: range.count)
    }
}
