import CLoopShim
import Glibc
import LoopCore

/// The loop's eventfd: any thread bumps it, the wait reads it. Made with the
/// backend and never replaced, so any thread may use it at any time; closed
/// only when neither the backend nor any waker holds it, so a waker used after
/// `close()` never writes into an unrelated descriptor that reused the number.
final class WakeupDescriptor: Sendable {
    let fd: Int32

    init() throws(SystemError) {
        fd = try systemCall("eventfd") { eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC)) }
    }

    deinit { closeDescriptor(fd) }

    /// Takes the wake-ups gathered since the last read; true when there were any.
    func take() -> Bool {
        var value: UInt64 = 0
        return readRecord(fd, &value)
    }
}

/// Wakes an epoll loop from any thread by bumping its eventfd.
struct EventFDWaker: LoopWaker {
    let target: WakeupDescriptor

    func wakeup() {
        var one: UInt64 = 1
        do {
            _ = try systemCall("write(eventfd)") { write(target.fd, &one, 8) }
        } catch {
            // Deliberately ignored: the only failure on the loop's own eventfd is
            // EAGAIN, a counter at its maximum, and that loop is woken already.
        }
    }
}

/// One record (an eventfd or timerfd counter, a signalfd siginfo) from one of
/// the backend's own non-blocking descriptors; false when none is waiting.
func readRecord<T: BitwiseCopyable>(_ fd: Int32, _ record: inout T) -> Bool {
    do {
        return try withUnsafeMutableBytes(of: &record) { bytes throws(SystemError) in
            try systemCall("read") { read(fd, bytes.baseAddress, bytes.count) } == bytes.count
        }
    } catch {
        // Every failure means "nothing to read": the descriptors are the backend's
        // own, so it is EAGAIN (none waiting), or EBADF once they are closed.
        return false
    }
}
