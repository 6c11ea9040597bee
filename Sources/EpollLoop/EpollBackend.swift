import CLoopShim
import Glibc
import LoopCore

/// The new design: level-triggered `epoll_wait`; a 10 ms quickpoll timerfd
/// and a 1 ms real timerfd on CLOCK_MONOTONIC, neither in the epoll set (read
/// where they are needed, and stopped while the loop sleeps, so an idle loop
/// wakes only for its own deadlines); an eventfd for wake-ups; a
/// signalfd for SIGHUP/SIGTERM/SIGINT/SIGPWR, and for SIGPIPE and SIGIO, which
/// it only counts (the legacy loop's handlers count them too; unblocked and
/// unhandled, either would terminate the process). No `select`, no
/// `setitimer`, no signal handlers.
///
/// signalfd sees a process-directed signal only if every thread blocks it:
/// this backend blocks the signals on the loop thread, worker threads inherit
/// a blocked mask, and an executable must block them in `main` before it
/// starts any other thread (see README).
package final class EpollBackend: LoopBackend {
    package let kind = LoopBackendKind.epoll
    package let descriptorLimit: Int32? = nil
    package let signals = LoopSignals()
    /// Wakers keep the eventfd alive, so a waker used after `close()` never
    /// writes into an unrelated descriptor that reused the number.
    package var waker: any LoopWaker { EventFDWaker(target: wake) }

    private let configuration: LoopConfiguration
    @exclusivity(unchecked) private var epollFD: Int32 = -1
    /// Made with the backend and never replaced, so any thread may read it at
    /// any time; closed when the backend and the last waker are gone.
    private let wake: WakeupDescriptor
    private var wakeFD: Int32 { wake.fd }
    private var quickTimerFD: Int32 = -1
    private var realTimerFD: Int32 = -1
    private var signalFD: Int32 = -1
    /// What the signalfd reads: the admin signals (unless disabled), and SIGPIPE and SIGIO to count.
    private let signalSet: [Int32]
    private var maskClaim: ThreadSignalMask.Claim?
    @exclusivity(unchecked) private var timersArmed = false
    /// Before this instant (ns) the quickpoll timer cannot have expired: no syscall needed.
    @exclusivity(unchecked) private var nextQuickPollCheck: Int64 = 0
    @exclusivity(unchecked) private var nextRealTimerRead: Int64 = 0
    /// Whether the timerfds are armed (see "Timers" below), and in stopped mode how far
    /// the CPU average has been fed from the clock (ns).
    @exclusivity(unchecked) private var timersRunning = false
    @exclusivity(unchecked) private var clockAccountedUntil: Int64 = 0
    /// What the kernel was last told per fd: its `data` (0 = nothing), to
    /// recognise events of kernel entries the loop no longer knows about.
    /// `data` is a fresh tag (high half) and the fd (low half), the tag new on
    /// every ADD and MOD: a kernel entry left behind when its fd was closed
    /// while a dup of the file lives on keeps its old tag, so it can never pass
    /// for the entry of a new file under the same number.
    private struct Watched {
        /// Tag and fd as given to the kernel; 0 = not watched.
        var data: UInt64 = 0
        var interest: Interest = []
        /// The core's generation for the fd's registration, handed back with its events.
        var generation: UInt32 = 0
        /// The file when it was added, to recognise the number closed or reused.
        var file: FileIdentity?
        /// Consecutive waits that reported the fd ready, and the last such wait.
        var streak: UInt32 = 0
        var lastReadyWait: UInt32 = 0
    }
    @exclusivity(unchecked) private var watched: [Watched] = []
    @exclusivity(unchecked) private var lastTag: UInt32 = 0
    @exclusivity(unchecked) private var waits: UInt32 = 0
    /// After this many consecutive ready reports an fd is checked (one `fstat`):
    /// a level-triggered entry whose fd was closed without unregistering, while
    /// a dup keeps the file alive, reports forever under its current tag.
    private static let revalidateAfter: UInt32 = 64
    @exclusivity(unchecked) private var needsRebuild = false
    /// Regular files (and other fds epoll refuses with EPERM): select reports them
    /// always ready, so this backend does too, without the kernel. The file's
    /// identity is kept to notice the number being closed or reused.
    private struct AlwaysReady {
        var generation: UInt32
        var interest: Interest
        var file: FileIdentity
    }
    @exclusivity(unchecked) private var alwaysReady: [Int32: AlwaysReady] = [:]
    @exclusivity(unchecked) private var datas = [UInt64](repeating: 0, count: 256)
    @exclusivity(unchecked) private var flags = [UInt32](repeating: 0, count: 256)

    /// What select counts as readable and as writable (the kernel's POLLIN_SET and
    /// POLLOUT_SET): a hang-up is readable only (a pipe whose writer is gone, a
    /// socket whose peer closed), an error both.
    private static let readableEvents = EPOLLIN.rawValue | EPOLLRDNORM.rawValue | EPOLLRDBAND.rawValue
        | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue
    private static let writableEvents = EPOLLOUT.rawValue | EPOLLWRNORM.rawValue | EPOLLWRBAND.rawValue | EPOLLERR.rawValue

    /// epoll data of the backend's own descriptors: generation 0, which the core never hands out.
    private enum Control: UInt64 { case wake = 1, signal = 3 }

    package init(configuration: LoopConfiguration = LoopConfiguration()) throws(LoopError) {
        self.configuration = configuration
        do { wake = try WakeupDescriptor() } catch { throw .system(error) }
        signalSet = (configuration.handlesAdminSignals ? adminSignals : []) + [SIGPIPE, SIGIO]
    }

    package func start() throws(LoopError) {
        do {
            epollFD = try systemCall("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
            quickTimerFD = try systemCall("timerfd_create") {
                timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK | TFD_CLOEXEC))
            }
            realTimerFD = try systemCall("timerfd_create") {
                timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK | TFD_CLOEXEC))
            }
            var mask = sigset_t()
            sigemptyset(&mask)
            for s in signalSet { sigaddset(&mask, s) }
            maskClaim = ThreadSignalMask.claim(Dictionary(uniqueKeysWithValues: signalSet.map { ($0, true) }))
            signalFD = try systemCall("signalfd") { signalfd(-1, &mask, Int32(SFD_NONBLOCK | SFD_CLOEXEC)) }

            try addControls(to: epollFD)
            // Neither timer is watched: the quickpoll timer is read at the QUICKPOLL
            // call site, the real timer around each wait (busy and idle ticks), so
            // neither costs a wake-up.
            setTimersEnabled(true)
        } catch {
            stop()
            throw .system(error)
        }
    }

    private func addControls(to epfd: Int32) throws(SystemError) {
        for (c, fd) in [(Control.wake, wakeFD), (.signal, signalFD)] {
            _ = try systemCall("epoll_ctl(ADD)") { shim_epoll_ctl(epfd, EPOLL_CTL_ADD, fd, EPOLLIN.rawValue, c.rawValue) }
        }
    }

    private static func events(for interest: Interest) -> UInt32 {
        var events: UInt32 = 0
        if interest.contains(.read) { events |= EPOLLIN.rawValue | EPOLLRDHUP.rawValue }
        if interest.contains(.write) { events |= EPOLLOUT.rawValue }
        return events
    }

    /// A file closed by its owner while a dup of it lives on (another fd, a
    /// child process) stays in the epoll set under its old number, and a
    /// level-triggered entry reports forever: no DEL can reach it any more.
    /// The cure is a fresh set holding only what the loop knows.
    private func rebuild() {
        needsRebuild = false
        guard let fresh = try? systemCall("epoll_create1", { epoll_create1(Int32(EPOLL_CLOEXEC)) }) else { return }
        guard (try? addControls(to: fresh)) != nil else {
            closeDescriptor(fresh)
            return
        }
        for (fd, w) in watched.enumerated() where w.data != 0 {
            // An fd its owner closed simply stays out (EBADF), as the kernel would have it.
            _ = shim_epoll_ctl(fresh, EPOLL_CTL_ADD, Int32(fd), Self.events(for: w.interest), w.data)
        }
        closeDescriptor(epollFD)
        epollFD = fresh
    }

    package func prepare(fd: Int32) throws(LoopError) {
        do { try setStatusFlags(fd: fd, adding: O_NONBLOCK) } catch { throw .system(error) }
    }

    package func setInterest(fd: Int32, generation: UInt32, old: Interest, new: Interest) throws(LoopError) {
        let index = Int(fd)
        if watched.count <= index { watched += repeatElement(Watched(), count: index + 1 - watched.count) }
        // Every registration asks the kernel again, so a number that named a
        // regular file and now names a pipe is watched as a pipe.
        alwaysReady[fd] = nil
        if new.isEmpty {
            if watched[index].data != 0 {
                // The owner may have closed the fd already (ENOENT, EBADF): the kernel then dropped it.
                _ = try? systemCall("epoll_ctl(DEL)") { shim_epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, 0, 0) }
            }
            forget(index)
            return
        }
        try watch(fd: fd, interest: new, generation: generation)
    }

    /// Adds or modifies the kernel entry of `fd` under a fresh tag.
    private func watch(fd: Int32, interest: Interest, generation: UInt32) throws(LoopError) {
        let index = Int(fd)
        lastTag &+= 1
        if lastTag == 0 { lastTag = 1 }  // 0 marks the backend's own descriptors
        let data = UInt64(lastTag) << 32 | UInt64(UInt32(bitPattern: fd))
        let events = Self.events(for: interest)
        var op = watched[index].data != 0 ? EPOLL_CTL_MOD : EPOLL_CTL_ADD
        while true {
            if shim_epoll_ctl(epollFD, op, fd, events, data) == 0 {
                // The file the kernel entry now belongs to, for the periodic check to compare
                // against: also after MOD failed with ENOENT and became an ADD (another file
                // under the number), and after a MOD that found the entry of a file dup'd back
                // onto the number. One fstat and one fcntl per interest change, never per event.
                watched[index].file = FileIdentity(of: fd)
                watched[index].data = data
                watched[index].interest = interest
                watched[index].generation = generation
                return
            }
            switch (errno, op) {
            case (EINTR, _): continue
            // The kernel has no entry for the file now under this number: the owner
            // closed the fd (the kernel forgot it), maybe reusing the number. An
            // entry of the old file that a dup keeps alive still carries its old
            // tag, and its first event triggers a rebuild.
            case (ENOENT, EPOLL_CTL_MOD): op = EPOLL_CTL_ADD
            case (EEXIST, EPOLL_CTL_ADD): op = EPOLL_CTL_MOD
            // A file epoll cannot watch (a regular file), also when the number named a pipe before (MOD).
            case (EPERM, _):
                forget(index)
                guard let file = FileIdentity(of: fd) else { throw .system(SystemError("fstat(\(fd))", errno: errno)) }
                alwaysReady[fd] = AlwaysReady(generation: generation, interest: interest, file: file)
                return
            default: throw .system(SystemError("epoll_ctl(\(fd))", errno: errno))
            }
        }
    }

    private func forget(_ index: Int) {
        watched[index] = Watched()
    }

    /// select drops a closed fd (EBADF) and watches whatever file a reused number
    /// names; the always-ready set follows suit: a closed fd leaves it, a new
    /// file under the number goes to the kernel (or stays, if also refused).
    private func refreshAlwaysReady() {
        for (fd, entry) in alwaysReady {
            guard let file = FileIdentity(of: fd) else {
                alwaysReady[fd] = nil
                continue
            }
            if file != entry.file {
                alwaysReady[fd] = nil
                if (try? watch(fd: fd, interest: entry.interest, generation: entry.generation)) == nil { forget(Int(fd)) }
            }
        }
    }

    package func wait(timeoutMs: Int, into events: inout [ReadyEvent]) throws(LoopError) {
        if !alwaysReady.isEmpty { refreshAlwaysReady() }
        let timeoutMs = alwaysReady.isEmpty ? timeoutMs : 0
        beforeWait(idle: timeoutMs < 0 || timeoutMs > configuration.quickPollIntervalMs)
        let n = datas.withUnsafeMutableBufferPointer { d in
            flags.withUnsafeMutableBufferPointer { f in
                shim_epoll_wait(epollFD, d.baseAddress, f.baseAddress, Int32(d.count), Int32(timeoutMs))
            }
        }
        let err = errno
        waits &+= 1
        afterWait()
        if n < 0 {
            if err == EINTR { return }
            throw .system(SystemError("epoll_wait", errno: err))
        }
        for i in 0..<Int(n) {
            let data = datas[i]
            let ev = flags[i]
            if data >> 32 == 0 {
                handleControl(Control(rawValue: data))
                continue
            }
            let fd = Int32(truncatingIfNeeded: data)
            guard Int(fd) < watched.count, watched[Int(fd)].data == data else {
                needsRebuild = true
                continue
            }
            guard stillReportsTheWatchedFile(fd) else { continue }
            // Only what was asked for, as select: a hang-up or an error comes unasked, and a
            // read registration added later in this batch must not take it for a read event.
            let interest = watched[Int(fd)].interest
            events.append(ReadyEvent(fd: fd, generation: watched[Int(fd)].generation,
                                     readable: interest.contains(.read) && ev & Self.readableEvents != 0,
                                     writable: interest.contains(.write) && ev & Self.writableEvents != 0))
        }
        if needsRebuild { rebuild() }
        for (fd, entry) in alwaysReady {
            events.append(ReadyEvent(fd: fd, generation: entry.generation,
                                     readable: entry.interest.contains(.read), writable: entry.interest.contains(.write)))
        }
    }

    /// Counts consecutive ready reports, and every `revalidateAfter` of them checks
    /// the fd: closed (select's EBADF clean-up drops it, and so does this backend)
    /// or another file under the number now (watched afresh, as select would by
    /// number). Either way the old kernel entry goes with a rebuild.
    private func stillReportsTheWatchedFile(_ fd: Int32) -> Bool {
        let index = Int(fd)
        watched[index].streak = watched[index].lastReadyWait == waits &- 1 ? watched[index].streak + 1 : 1
        watched[index].lastReadyWait = waits
        guard watched[index].streak >= Self.revalidateAfter else { return true }
        watched[index].streak = 0
        guard let file = FileIdentity(of: fd) else {
            forget(index)
            needsRebuild = true
            return false
        }
        guard file != watched[index].file else { return true }
        let (interest, generation) = (watched[index].interest, watched[index].generation)
        forget(index)
        needsRebuild = true
        if (try? watch(fd: fd, interest: interest, generation: generation)) == nil { forget(index) }
        return false
    }

    // MARK: Timers
    //
    // Two modes while the timers are enabled. Running: both timerfds armed, the real
    // timer's expirations read around each wait (busy before, idle after), the quickpoll
    // timer's at the QUICKPOLL call site. Stopped: neither armed, so an idle loop costs
    // the kernel no timer interrupts and itself no syscalls per wake-up; the CPU average
    // is fed from the clock instead (time outside waits busy, inside idle, in whole real-
    // timer ticks). A wait longer than the quickpoll interval stops them; a shorter one
    // (timed work) or busy work that reaches a QUICKPOLL call site a whole interval after
    // its wait starts them again.

    private func beforeWait(idle: Bool) {
        guard timersArmed else { return }
        if timersRunning {
            collectRealTimerTicks(busy: true)
            if idle { stopTimers() }
        } else {
            accountByClock(busy: true)
            if !idle { startTimers() }
        }
    }

    private func afterWait() {
        guard timersArmed else { return }
        if timersRunning {
            collectRealTimerTicks(busy: false)
            takeQuickPollTicksOfTheWait()
        } else {
            accountByClock(busy: false)
            restartQuickPollInterval()
        }
    }

    /// Real-timer expirations since the last read count as busy (before a wait)
    /// or idle (after one). Read at most once per tick, so a loop turning
    /// over fast does not pay a syscall per iteration.
    private func collectRealTimerTicks(busy: Bool) {
        let now = monotonicNanoseconds()
        guard now >= nextRealTimerRead else { return }
        nextRealTimerRead = now + Int64(configuration.realTimerIntervalMs) * 1_000_000
        signals.recordCPUTicks(busy: busy, count: Self.expirations(realTimerFD))
    }

    /// Stopped mode: the whole real-timer ticks since the last accounting, as busy or idle.
    private func accountByClock(busy: Bool) {
        let tickNs = Int64(configuration.realTimerIntervalMs) * 1_000_000
        let ticks = (monotonicNanoseconds() - clockAccountedUntil) / tickNs
        guard ticks > 0 else { return }
        clockAccountedUntil += ticks * tickNs
        signals.recordCPUTicks(busy: busy, count: Int(ticks))
    }

    /// Quickpoll expirations that fell in a wait belong to it, not to the work that
    /// follows: taken here (the core clears the flag they raise after the wait), at
    /// most one read per interval. The work after the wait is asked to quickpoll only
    /// once it has run a whole interval: the QUICKPOLL call site reads the timer no
    /// earlier than that.
    private func takeQuickPollTicksOfTheWait() {
        if monotonicNanoseconds() >= nextQuickPollCheck { quickPollTick(Self.expirations(quickTimerFD)) }
        restartQuickPollInterval()
    }

    private func stopTimers() {
        arm(quickTimerFD, ms: 0)
        arm(realTimerFD, ms: 0)
        timersRunning = false
        clockAccountedUntil = monotonicNanoseconds()
    }

    /// Both timers from now on, a whole period each before their first expiration.
    private func startTimers() {
        // From stopped mode: the time since the last wait was work.
        if clockAccountedUntil > 0 { accountByClock(busy: true) }
        clockAccountedUntil = 0
        arm(quickTimerFD, ms: configuration.quickPollIntervalMs)
        arm(realTimerFD, ms: configuration.realTimerIntervalMs)
        timersRunning = true
        restartQuickPollInterval()
        nextRealTimerRead = monotonicNanoseconds() + Int64(configuration.realTimerIntervalMs) * 1_000_000
    }

    /// The QUICKPOLL call site reads the timer no earlier than a whole interval from now.
    private func restartQuickPollInterval() {
        nextQuickPollCheck = monotonicNanoseconds() + Int64(configuration.quickPollIntervalMs) * 1_000_000
    }

    private func handleControl(_ c: Control?) {
        switch c {
        case .wake:
            var value: UInt64 = 0
            if read(wakeFD, &value, 8) == 8 { signals.wakeups.add(1, ordering: .relaxed) }
        case .signal:
            var info = signalfd_siginfo()
            while read(signalFD, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
                record(Int32(info.ssi_signo))
            }
        case nil:
            break
        }
    }

    private func record(_ signo: Int32) {
        switch signo {
        case SIGPIPE: signals.sigPipes.add(1, ordering: .relaxed)
        case SIGIO: signals.sigIOs.add(1, ordering: .relaxed)
        default: signals.requestShutdown(ShutdownReason.forSignal(signo))
        }
    }

    /// Expirations are read only here, so several may have gathered over many
    /// iterations: `nowApprox` is set from the clock, not advanced per expiration.
    private func quickPollTick(_ count: Int) {
        guard count > 0 else { return }
        signals.quickPollTick(count: count, now: configuration.clock.milliseconds())
        restartQuickPollInterval()
    }

    /// Busy work cannot wait in epoll_wait, so the QUICKPOLL call site asks
    /// here: a vDSO clock read, and only once an interval may have passed, a
    /// non-blocking read of the quickpoll timerfd.
    package func pollQuickPollTimer() {
        guard timersArmed, monotonicNanoseconds() >= nextQuickPollCheck else { return }
        if !timersRunning {
            // Stopped at the last wait, which ended a whole interval ago: that is the tick.
            startTimers()
            quickPollTick(1)
            return
        }
        let n = Self.expirations(quickTimerFD)
        if n > 0 { quickPollTick(n) } else { nextQuickPollCheck = monotonicNanoseconds() + 1_000_000 }
    }

    /// Number of expirations since the last read; 0 when none (EAGAIN).
    private static func expirations(_ fd: Int32) -> Int {
        var count: UInt64 = 0
        return read(fd, &count, 8) == 8 ? Int(count) : 0
    }

    package func setTimersEnabled(_ enabled: Bool) {
        timersArmed = enabled
        if enabled {
            startTimers()
        } else {
            arm(quickTimerFD, ms: 0)
            arm(realTimerFD, ms: 0)
            timersRunning = false
            clockAccountedUntil = 0
        }
    }

    private func arm(_ fd: Int32, ms: Int) {
        guard fd >= 0 else { return }
        let period = timespec(tv_sec: ms / 1000, tv_nsec: (ms % 1000) * 1_000_000)
        var spec = itimerspec(it_interval: period, it_value: period)
        timerfd_settime(fd, 0, &spec, nil)
    }

    package func setInterruptsEnabled(_ enabled: Bool) {
        // No asynchronous signal handlers: nothing to mask.
    }

    package func stop() {
        if let claim = maskClaim {
            // A SIGPIPE or SIGIO that arrived while the loop owned it is the loop's to
            // count, as legacy's handler does, also when the embedder blocks it too: left
            // pending (a write in the last callback raised it, say), it would meet its
            // default action (terminate) whenever the thread or the process unblocks it.
            // Admin signals stay pending and reach the embedder's own disposition.
            if signalFD >= 0 {
                var set = sigset_t()
                sigemptyset(&set)
                sigaddset(&set, SIGPIPE)
                sigaddset(&set, SIGIO)
                if signalfd(signalFD, &set, Int32(SFD_NONBLOCK | SFD_CLOEXEC)) >= 0 {
                    var info = signalfd_siginfo()
                    while read(signalFD, &info, MemoryLayout<signalfd_siginfo>.size) > 0 { record(Int32(info.ssi_signo)) }
                }
            }
            ThreadSignalMask.release(claim)
            maskClaim = nil
        }
        closeOwnDescriptors()
    }

    package func abandon() {
        if let claim = maskClaim { ThreadSignalMask.release(claim) }  // bookkeeping only, in a child
        maskClaim = nil
        closeOwnDescriptors()
    }

    private func closeOwnDescriptors() {
        timersArmed = false
        for fd in [signalFD, realTimerFD, quickTimerFD, epollFD] { closeDescriptor(fd) }
        signalFD = -1; realTimerFD = -1; quickTimerFD = -1; epollFD = -1
    }
}

/// Which file a descriptor names (device, inode and access mode), or nil when it names none (closed).
struct FileIdentity: Equatable {
    let device: UInt
    let inode: UInt
    /// O_RDONLY, O_WRONLY or O_RDWR: a pipe's two ends share one inode and differ here.
    let accessMode: Int32

    init?(of fd: Int32) {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return nil }
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0 else { return nil }
        device = UInt(info.st_dev)
        inode = UInt(info.st_ino)
        accessMode = flags & O_ACCMODE
    }
}

/// The loop's eventfd, closed only when neither the backend nor any waker holds it.
final class WakeupDescriptor: Sendable {
    let fd: Int32
    init() throws(SystemError) {
        fd = try systemCall("eventfd") { eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC)) }
    }
    deinit { closeDescriptor(fd) }
}

/// Wakes an epoll loop from any thread by bumping its eventfd.
struct EventFDWaker: LoopWaker {
    let target: WakeupDescriptor
    func wakeup() {
        var one: UInt64 = 1
        _ = write(target.fd, &one, 8)
    }
}

/// A loop on the epoll backend.
package func makeEpollLoop(configuration: LoopConfiguration = LoopConfiguration()) throws(LoopError) -> EventLoop {
    try EventLoop(backend: EpollBackend(configuration: configuration), configuration: configuration)
}
