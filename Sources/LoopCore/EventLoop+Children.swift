import CLoopShim
import Glibc

/// How a watched child ended (`EventLoop.watchChild`).
public enum ChildExit: Sendable, Equatable, CustomStringConvertible {
    /// It exited with this status (0…255).
    case exited(Int32)
    /// A signal killed it.
    case killed(signal: Int32)
    /// Someone else reaped it first (a `waitpid(-1)` elsewhere in the program): its
    /// status is gone, but the watch still ends with a call, never silently.
    case reapedElsewhere

    /// From a `waitpid` status.
    public init(status: Int32) {
        let signal = status & 0x7f
        self = signal == 0 ? .exited((status >> 8) & 0xff) : .killed(signal: signal)
    }

    /// `exited 3`, `killed by SIGKILL`, `reaped elsewhere`.
    public var description: String {
        switch self {
        case .exited(let code): "exited \(code)"
        case .killed(let signal): "killed by \(signalName(signal))"
        case .reapedElsewhere: "reaped elsewhere"
        }
    }
}

/// One watched child: its handle, its callback and, on epoll, its pidfd.
final class ChildWatch {
    let pid: Int32
    let registration: Registration
    var callback: ((ChildExit) -> Void)?
    var pidfd: Int32 = -1
    var pidfdRegistration: Registration?
    init(pid: Int32, registration: Registration, callback: @escaping (ChildExit) -> Void) {
        (self.pid, self.registration, self.callback) = (pid, registration, callback)
    }
}

/// The watched children by pid, and what the legacy loop's SIGCHLD count was at the last check.
struct ChildWatches {
    var byPid: [Int32: ChildWatch] = [:]
    var sigChldsSeen = 0
    /// A watch was added: check once without waiting for a SIGCHLD (it may have come already).
    var checkPending = false
}

/// Child processes' exits as loop callbacks.
extension EventLoop {
    /// Calls `callback` once, on the loop thread, when child `pid` exits, after
    /// reaping it with `waitpid(pid)` (that pid only: other children of the program
    /// are left to their owners). The legacy loop notices the exit by its SIGCHLD
    /// (the original's way: the handler wakes the loop, which then checks each watched
    /// child without blocking), the epoll loop by a pidfd (Linux 5.3 or later).
    ///
    /// Cancel with `unregister` before the exit: the child is then left unreaped, for
    /// the program to wait for. One watch per child. A child reaped by someone else
    /// first still ends its watch, with `.reapedElsewhere`.
    ///
    /// - Parameters:
    ///   - pid: a child of this process not yet reaped.
    ///   - niceness: the niceness `niceness` reports while the callback runs (0…2).
    ///   - callback: called once with how the child ended, unless cancelled first.
    /// - Returns: the handle to pass to `unregister`.
    /// - Throws: `.notAChild` when `pid` is not a child of this process (or was reaped
    ///   already), `.childAlreadyWatched`, `.invalidNiceness`, `.noEmptySlots`,
    ///   `.system` when `pidfd_open` fails (epoll on a kernel before 5.3), and the usual
    ///   `.wrongThread`, `.forkedChild` and `.closed`.
    @discardableResult
    public func watchChild(
        pid: Int32, niceness: Int = 0,
        _ callback: @escaping (ChildExit) -> Void
    ) throws(LoopError) -> Registration {
        try checkUsable("watchChild")
        try checkNiceness(niceness)
        guard pid > 0, shim_child_exited(pid) >= 0 else { throw .notAChild(pid) }
        guard table.children.byPid[pid] == nil else { throw .childAlreadyWatched(pid) }
        try table.reserve()
        let r = Registration(
            kind: .child, fd: -1, niceness: niceness, owner: nil, tick: 0, now: now,
            fdCallback: nil, sleepCallback: nil)
        r.childPid = pid
        let watch = ChildWatch(pid: pid, registration: r, callback: callback)
        if backend.reportsChildExitsBySignal {
            table.children.checkPending = true
        } else {
            let fd = shim_pidfd_open(pid)
            guard fd >= 0 else {
                table.cancelReservation()
                throw .system(SystemError("pidfd_open", errno: errno))
            }
            do {
                watch.pidfdRegistration = try registerRead(fd: fd, niceness: niceness) { [weak self] _ in
                    self?.reapWatchedChild(pid)
                }
            } catch {
                closeDescriptor(fd)
                table.cancelReservation()
                throw error
            }
            watch.pidfd = fd
        }
        table.children.byPid[pid] = watch
        return r
    }

    /// Legacy: after each full poll's wait, if a SIGCHLD arrived since the last check
    /// (or a watch is new), every watched child is asked, without blocking.
    func checkWatchedChildren() {
        guard backend.reportsChildExitsBySignal, !table.children.byPid.isEmpty else { return }
        let seen = signals.sigChlds.load(ordering: .acquiring)
        guard seen != table.children.sigChldsSeen || table.children.checkPending else { return }
        table.children.sigChldsSeen = seen
        table.children.checkPending = false
        for pid in table.children.byPid.keys.sorted() { reapWatchedChild(pid) }
    }

    /// Reaps `pid` if it has exited and, if so, ends its watch with a call.
    func reapWatchedChild(_ pid: Int32) {
        guard let watch = table.children.byPid[pid] else { return }
        var status: Int32 = 0
        var result: pid_t
        repeat { result = waitpid(pid, &status, WNOHANG) } while result < 0 && errno == EINTR
        let exit: ChildExit
        if result == pid {
            exit = ChildExit(status: status)
        } else if result < 0 && errno == ECHILD {
            exit = .reapedElsewhere
        } else {
            return // still running: a SIGCHLD of another child, or a wake-up
        }
        let callback = watch.callback
        endChildWatch(watch)
        let saved = niceness
        niceness = watch.registration.effectiveNiceness
        stats.callbacks[min(max(watch.registration.niceness, 0), 2)] += 1
        callback?(exit)
        niceness = saved
    }

    /// Takes the watch out: its handle goes inactive, its pidfd is closed once the
    /// current batch is dispatched (its own event may be in it).
    func endChildWatch(_ watch: ChildWatch) {
        table.children.byPid[watch.pid] = nil
        table.cancelReservation()
        _ = watch.registration.detach()
        let callback = watch.callback
        watch.callback = nil
        defer { withExtendedLifetime(callback) {} }
        guard watch.pidfd >= 0 else { return }
        do { try closeAfterBatch(fd: watch.pidfd) } catch {
            // Only on a closed loop or the wrong thread, where the loop's teardown closes it.
        }
        watch.pidfd = -1
    }

    /// For `close()`: every watch, taken out; their pidfds are closed here.
    func removeAllChildWatches() -> [ChildWatch] {
        let watches = Array(table.children.byPid.values)
        table.children = ChildWatches()
        for watch in watches {
            _ = watch.registration.detach()
            if watch.pidfd >= 0 { closeDescriptor(watch.pidfd) }
            watch.pidfd = -1
        }
        return watches
    }
}
