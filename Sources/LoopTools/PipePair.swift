import Glibc

/// A pipe whose two ends close with the value: a readiness source for tests.
public final class PipePair {
    public let readEnd: Int32
    public let writeEnd: Int32

    public init() {
        var fds: [Int32] = [-1, -1]
        precondition(pipe(&fds) == 0, "pipe: errno \(errno)")
        readEnd = fds[0]
        writeEnd = fds[1]
    }

    /// Makes the read end readable.
    public func fill(_ byte: UInt8 = 1) {
        var b = byte
        _ = write(writeEnd, &b, 1)
    }

    /// Reads until the pipe is empty (the read end must be non-blocking, as a registered fd is).
    public func drain() {
        var buf = [UInt8](repeating: 0, count: 4096)
        while read(readEnd, &buf, buf.count) > 0 {}
    }

    deinit {
        close(readEnd)
        close(writeEnd)
    }
}
