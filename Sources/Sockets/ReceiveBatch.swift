import Glibc

/// Page-aligned memory whose usable part starts half a page in. The kernel copies a
/// datagram between a socket buffer, whose data starts near the beginning of a page,
/// and ours; when both start at the same offset within their pages, every load in the
/// copy waits on the store before it (4K aliasing). Measured on this project's bench
/// machine: 16 KB datagrams received 25 % slower into buffers 16 bytes into a page than
/// 2048 bytes in (glibc gives blocks of 128 KiB and more page + 16).
package struct OffsetMemory {
    static let offset = 2048
    let base: UnsafeMutableRawPointer
    package let bytes: UnsafeMutableRawBufferPointer

    package init(byteCount: Int) {
        base = .allocate(byteCount: Self.offset + byteCount, alignment: 4096)
        bytes = UnsafeMutableRawBufferPointer(start: base + Self.offset, count: byteCount)
    }

    package func deallocate() { base.deallocate() }
}

/// Where one `recvmmsg` puts its datagrams: `capacity` buffers of one datagram
/// plus a byte (so an oversized one shows as too long), with their sources and
/// real lengths. Owned by one server; freed with it.
package final class ReceiveBatch {
    package let capacity: Int
    /// Each buffer's size.
    package let bufferSize: Int
    private let memory: OffsetMemory
    package var buffers: UnsafeMutableRawBufferPointer { memory.bytes }
    package let sources: UnsafeMutableBufferPointer<sockaddr_in>
    package let lengths: UnsafeMutableBufferPointer<UInt32>

    package init(capacity: Int, datagramSize: Int) {
        self.capacity = capacity
        bufferSize = datagramSize + 1
        memory = OffsetMemory(byteCount: capacity * bufferSize)
        sources = .allocate(capacity: capacity)
        sources.initialize(repeating: sockaddr_in())
        lengths = .allocate(capacity: capacity)
        lengths.initialize(repeating: 0)
    }

    deinit {
        memory.deallocate()
        sources.deallocate()
        lengths.deallocate()
    }

    /// Datagram `i` of the last read, cut to the buffer (its real length may be more).
    package func datagram(_ i: Int) -> UnsafeRawBufferPointer {
        let start = i * bufferSize
        return UnsafeRawBufferPointer(rebasing: buffers[start..<start + min(Int(lengths[i]), bufferSize)])
    }
}
