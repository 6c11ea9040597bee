import Glibc

/// A failed system call: the call's name and its errno.
public struct SystemError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The call that failed, as the loop names it (`epoll_ctl(ADD)`, say).
    public let call: String
    /// Its errno.
    public let errno: Int32

    package init(_ call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var description: String {
        "\(call): \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// Every raw syscall the loops make goes through here once: `EINTR` is retried
/// and errno becomes a typed error.
@inline(__always)
package func systemCall<R: BinaryInteger>(
    _ name: @autoclosure () -> String,
    _ body: () -> R
) throws(SystemError) -> R {
    while true {
        let result = body()
        if result >= 0 { return result }
        let err = Glibc.errno
        if err == EINTR { continue }
        throw SystemError(name(), errno: err)
    }
}

/// For a wait that a signal must end (a timer tick, a wake-up, an admin signal):
/// as `systemCall`, but `EINTR` is the answer, not a failure, and gives nil.
@inline(__always)
package func interruptibleSystemCall<R: BinaryInteger>(
    _ name: @autoclosure () -> String,
    _ body: () -> R
) throws(SystemError) -> R? {
    let result = body()
    if result >= 0 { return result }
    let err = Glibc.errno
    if err == EINTR { return nil }
    throw SystemError(name(), errno: err)
}

/// Sets `O_NONBLOCK` (plus `extra` flags such as `O_ASYNC`) on a descriptor.
package func setStatusFlags(fd: Int32, adding extra: Int32) throws(SystemError) {
    let flags = try systemCall("fcntl(F_GETFL)") { fcntl(fd, F_GETFL) }
    let wanted = flags | extra
    if wanted != flags {
        _ = try systemCall("fcntl(F_SETFL)") { fcntl(fd, F_SETFL, wanted) }
    }
}

/// Closes a descriptor the loop owns; `EINTR` on close must not be retried on Linux.
package func closeDescriptor(_ fd: Int32) {
    // The result is deliberately ignored: Linux frees the number whatever close
    // reports (EINTR, EIO), so a failure leaves nothing to retry or undo.
    if fd >= 0 { _ = Glibc.close(fd) }
}
