import CLoopShim
import Glibc
import LoopCore

/// The new design: level-triggered `epoll_wait`; a 10 ms quickpoll timerfd
/// and a 1 ms real timerfd on CLOCK_MONOTONIC; an eventfd for wake-ups; a
/// signalfd for SIGHUP/SIGTERM/SIGINT/SIGPWR (and SIGPIPE, to count it).
/// No `select`, no `setitimer`, no signal handlers.
///
/// signalfd sees a process-directed signal only if every thread blocks it:
/// this backend blocks the signals on the loop thread, worker threads inherit
/// a blocked mask, and an executable must block them in `main` before it
/// starts any other thread (see README).
public final class EpollBackend: LoopBackend {
    public let kind = LoopBackendKind.epoll
    public let descriptorLimit: Int32? = nil
    public let signals = LoopSignals()
    /// Wakers keep the eventfd alive, so a waker used after `close()` never
    /// writes into an unrelated descriptor that reused the number.
    public var waker: any LoopWaker { EventFDWaker(target: wake!) }

    private let configuration: LoopConfiguration
    @exclusivity(unchecked) private var epollFD: Int32 = -1
    private var wake: WakeupDescriptor?
    private var wakeFD: Int32 { wake?.fd ?? -1 }
    private var quickTimerFD: Int32 = -1
    private var realTimerFD: Int32 = -1
    private var signalFD: Int32 = -1
    private var savedMask = sigset_t()
    private var maskChanged = false
    @exclusivity(unchecked) private var timersArmed = false
    /// Before this instant (ns) the quickpoll timer cannot have expired: no syscall needed.
    @exclusivity(unchecked) private var nextQuickPollCheck: Int64 = 0
    @exclusivity(unchecked) private var nextRealTimerRead: Int64 = 0
    /// What the kernel was told per fd (`data`, 0 = nothing), to recognise
    /// events of kernel entries the loop no longer knows about.
    @exclusivity(unchecked) private var registered: [UInt64] = []
    @exclusivity(unchecked) private var registeredInterest: [Interest] = []
    @exclusivity(unchecked) private var needsRebuild = false
    /// Regular files (and other fds epoll refuses with EPERM): select reports them
    /// always ready, so this backend does too, without the kernel.
    @exclusivity(unchecked) private var alwaysReady: [Int32: (generation: UInt32, interest: Interest)] = [:]
    @exclusivity(unchecked) private var datas = [UInt64](repeating: 0, count: 256)
    @exclusivity(unchecked) private var flags = [UInt32](repeating: 0, count: 256)

    /// epoll data of the backend's own descriptors: generation 0, which the core never hands out.
    private enum Control: UInt64 { case wake = 1, quickTimer = 2, signal = 3 }

    public init(configuration: LoopConfiguration = LoopConfiguration()) {
        self.configuration = configuration
    }

    public func start() throws(LoopError) {
        do {
            epollFD = try systemCall("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
            wake = try WakeupDescriptor()
            quickTimerFD = try systemCall("timerfd_create") {
                timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK | TFD_CLOEXEC))
            }
            realTimerFD = try systemCall("timerfd_create") {
                timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK | TFD_CLOEXEC))
            }
            var mask = sigset_t()
            sigemptyset(&mask)
            sigaddset(&mask, SIGPIPE)
            if configuration.handlesAdminSignals { for s in adminSignals { sigaddset(&mask, s) } }
            pthread_sigmask(SIG_BLOCK, &mask, &savedMask)
            maskChanged = true
            signalFD = try systemCall("signalfd") { signalfd(-1, &mask, Int32(SFD_NONBLOCK | SFD_CLOEXEC)) }

            try addControls(to: epollFD)
            // The real timer is not watched: its expirations are read around each
            // wait and split into busy and idle ticks, so it costs no wake-ups.
            setTimersEnabled(true)
        } catch {
            stop()
            throw .system(error)
        }
    }

    private func addControls(to epfd: Int32) throws(SystemError) {
        for (c, fd) in [(Control.wake, wakeFD), (.quickTimer, quickTimerFD), (.signal, signalFD)] {
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
        for (fd, data) in registered.enumerated() where data != 0 {
            // An fd its owner closed simply stays out (EBADF), as the kernel would have it.
            _ = shim_epoll_ctl(fresh, EPOLL_CTL_ADD, Int32(fd), Self.events(for: registeredInterest[fd]), data)
        }
        closeDescriptor(epollFD)
        epollFD = fresh
    }

    public func prepare(fd: Int32) throws(LoopError) {
        do { try setStatusFlags(fd: fd, adding: O_NONBLOCK) } catch { throw .system(error) }
    }

    public func setInterest(fd: Int32, generation: UInt32, old: Interest, new: Interest) throws(LoopError) {
        if alwaysReady[fd] != nil {
            alwaysReady[fd] = new.isEmpty ? nil : (generation, new)
            return
        }
        let events = Self.events(for: new)
        let data = UInt64(generation) << 32 | UInt64(UInt32(bitPattern: fd))
        if registered.count <= Int(fd) {
            registered += repeatElement(0, count: Int(fd) + 1 - registered.count)
            registeredInterest += repeatElement([], count: Int(fd) + 1 - registeredInterest.count)
        }
        var op = new.isEmpty ? EPOLL_CTL_DEL : (old.isEmpty ? EPOLL_CTL_ADD : EPOLL_CTL_MOD)
        while true {
            if shim_epoll_ctl(epollFD, op, fd, events, data) == 0 {
                registered[Int(fd)] = new.isEmpty ? 0 : data
                registeredInterest[Int(fd)] = new
                return
            }
            switch (errno, op) {
            case (EINTR, _): continue
            // The owner closed the fd earlier, so the kernel forgot it: add afresh.
            case (ENOENT, EPOLL_CTL_MOD): op = EPOLL_CTL_ADD
            case (EEXIST, EPOLL_CTL_ADD): op = EPOLL_CTL_MOD
            case (EPERM, EPOLL_CTL_ADD):
                alwaysReady[fd] = (generation, new)
                return
            case (ENOENT, EPOLL_CTL_DEL), (EBADF, EPOLL_CTL_DEL):
                registered[Int(fd)] = 0
                registeredInterest[Int(fd)] = []
                return
            default: throw .system(SystemError("epoll_ctl(\(fd))", errno: errno))
            }
        }
    }

    public func wait(timeoutMs: Int, into events: inout [ReadyEvent]) throws(LoopError) {
        collectRealTimerTicks(busy: true)
        let timeoutMs = alwaysReady.isEmpty ? timeoutMs : 0
        let n = datas.withUnsafeMutableBufferPointer { d in
            flags.withUnsafeMutableBufferPointer { f in
                shim_epoll_wait(epollFD, d.baseAddress, f.baseAddress, Int32(d.count), Int32(timeoutMs))
            }
        }
        let err = errno
        collectRealTimerTicks(busy: false)
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
            guard Int(fd) < registered.count, registered[Int(fd)] == data else {
                needsRebuild = true
                continue
            }
            let failed = ev & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0
            events.append(ReadyEvent(
                fd: fd, generation: UInt32(truncatingIfNeeded: data >> 32),
                readable: failed || ev & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue) != 0,
                writable: failed || ev & EPOLLOUT.rawValue != 0))
        }
        if needsRebuild { rebuild() }
        for (fd, entry) in alwaysReady {
            events.append(ReadyEvent(fd: fd, generation: entry.generation,
                                     readable: entry.interest.contains(.read), writable: entry.interest.contains(.write)))
        }
    }

    /// Real-timer expirations since the last read count as busy (before a wait)
    /// or idle (after one). Read at most once per tick, so a loop turning
    /// over fast does not pay a syscall per iteration.
    private func collectRealTimerTicks(busy: Bool) {
        let now = monotonicNanoseconds()
        guard timersArmed, now >= nextRealTimerRead else { return }
        nextRealTimerRead = now + Int64(configuration.realTimerIntervalMs) * 1_000_000
        signals.recordCPUTicks(busy: busy, count: Self.expirations(realTimerFD))
    }

    private func handleControl(_ c: Control?) {
        switch c {
        case .wake:
            var value: UInt64 = 0
            if read(wakeFD, &value, 8) == 8 { signals.wakeups.add(1, ordering: .relaxed) }
        case .quickTimer:
            quickPollTick(Self.expirations(quickTimerFD))
        case .signal:
            var info = signalfd_siginfo()
            while read(signalFD, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
                let signo = Int32(info.ssi_signo)
                if signo == SIGPIPE {
                    signals.sigPipes.add(1, ordering: .relaxed)
                } else {
                    signals.requestShutdown(ShutdownReason.forSignal(signo))
                }
            }
        case nil:
            break
        }
    }

    private func quickPollTick(_ count: Int) {
        guard count > 0 else { return }
        signals.quickPollTick(count: count, intervalMs: Int64(configuration.quickPollIntervalMs))
        nextQuickPollCheck = monotonicNanoseconds() + Int64(configuration.quickPollIntervalMs) * 1_000_000
    }

    /// Busy work cannot wait in epoll_wait, so the QUICKPOLL call site asks
    /// here: a vDSO clock read, and only once an interval may have passed, a
    /// non-blocking read of the quickpoll timerfd.
    public func pollQuickPollTimer() {
        guard timersArmed, monotonicNanoseconds() >= nextQuickPollCheck else { return }
        let n = Self.expirations(quickTimerFD)
        if n > 0 { quickPollTick(n) } else { nextQuickPollCheck = monotonicNanoseconds() + 1_000_000 }
    }

    /// Number of expirations since the last read; 0 when none (EAGAIN).
    private static func expirations(_ fd: Int32) -> Int {
        var count: UInt64 = 0
        return read(fd, &count, 8) == 8 ? Int(count) : 0
    }

    public func setTimersEnabled(_ enabled: Bool) {
        timersArmed = enabled
        arm(quickTimerFD, ms: enabled ? configuration.quickPollIntervalMs : 0)
        arm(realTimerFD, ms: enabled ? configuration.realTimerIntervalMs : 0)
        nextQuickPollCheck = monotonicNanoseconds() + Int64(configuration.quickPollIntervalMs) * 1_000_000
    }

    private func arm(_ fd: Int32, ms: Int) {
        guard fd >= 0 else { return }
        let period = timespec(tv_sec: ms / 1000, tv_nsec: (ms % 1000) * 1_000_000)
        var spec = itimerspec(it_interval: period, it_value: period)
        timerfd_settime(fd, 0, &spec, nil)
    }

    public func setInterruptsEnabled(_ enabled: Bool) {
        // No asynchronous signal handlers: nothing to mask.
    }

    public func stop() {
        if signalFD >= 0 && maskChanged {
            // Take pending signals off the queue before unblocking, or they would
            // hit their default action (terminate) the moment the mask is restored.
            // Only those the restore unblocks: what the embedder still blocks stays pending for it.
            var unblocked = sigset_t()
            sigemptyset(&unblocked)
            for s in adminSignals + [SIGPIPE] where sigismember(&savedMask, s) == 0 { sigaddset(&unblocked, s) }
            if signalfd(signalFD, &unblocked, Int32(SFD_NONBLOCK | SFD_CLOEXEC)) >= 0 {
                var info = signalfd_siginfo()
                while read(signalFD, &info, MemoryLayout<signalfd_siginfo>.size) > 0 {
                    if Int32(info.ssi_signo) != SIGPIPE { signals.requestShutdown(.forSignal(Int32(info.ssi_signo))) }
                }
            }
        }
        if maskChanged {
            pthread_sigmask(SIG_SETMASK, &savedMask, nil)
            maskChanged = false
        }
        for fd in [signalFD, realTimerFD, quickTimerFD, epollFD] { closeDescriptor(fd) }
        signalFD = -1; realTimerFD = -1; quickTimerFD = -1; epollFD = -1
        wake = nil  // closed when the last waker goes
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
public func makeEpollLoop(configuration: LoopConfiguration = LoopConfiguration()) throws(LoopError) -> EventLoop {
    try EventLoop(backend: EpollBackend(configuration: configuration), configuration: configuration)
}
