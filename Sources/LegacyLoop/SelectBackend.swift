import CLoopShim
import Glibc
import LoopCore

/// The original design: `select()` for readiness, `setitimer` for the 1 ms
/// real and 10 ms virtual timers, signals for wake-ups and shutdown.
///
/// The original's lost wake-up (a SIGCHLD arriving between the check and
/// `select()`, or on another thread) is closed here: workers direct SIGCHLD
/// at the loop thread with `tgkill`, the loop thread keeps SIGCHLD blocked
/// outside the wait, and `pselect` unblocks it atomically for the wait, so a
/// wake-up that arrives early stays pending and ends the wait at once.
package final class SelectBackend: LoopBackend {
    package let kind = LoopBackendKind.legacy
    package let descriptorLimit: Int32? = Int32(shim_fd_setsize())
    package let signals = LoopSignals()
    /// Its SIGCHLD handler already wakes the loop (the original's way of noticing children).
    package let reportsChildExitsBySignal = true
    package var waker: any LoopWaker { SignalWaker(serial: serial) }

    private let configuration: LoopConfiguration
    private var readSet = fd_set()
    private var writeSet = fd_set()
    private var generations: [UInt32]
    private var highestFd: Int32 = -1
    private var started = false
    private var serial: UInt64 = 0
    private var savedActions: [(Int32, sigaction)] = []
    private var maskClaim: ThreadSignalMask.Claim?
    private var savedRealTimer = itimerval()
    private var savedVirtualTimer = itimerval()

    /// The signals this backend installs handlers for.
    static let handledSignals: [Int32] = [SIGALRM, SIGVTALRM, SIGCHLD, SIGPIPE, SIGIO]

    package init(configuration: LoopConfiguration = LoopConfiguration()) {
        self.configuration = configuration
        self.generations = Array(repeating: 0, count: Int(shim_fd_setsize()))
        shim_fd_zero(&readSet)
        shim_fd_zero(&writeSet)
    }

    package func start() throws(LoopError) {
        // ITIMER_REAL's SIGALRM is process-directed and goes to the main thread
        // first: a loop on another thread would have it interrupt the main
        // thread's poll, nanosleep and sleep 1000 times a second.
        if getpid() != shim_gettid() && !configuration.allowsUnroutedTimerSignals
            && !ProcessSignals.legacyTimerSignalsRouted.load(ordering: .acquiring)
            && !mainThreadKeepsBlocking([SIGALRM, SIGVTALRM])
        {
            throw .legacyTimerSignalsUnrouted
        }
        // In a forked child the parent's loop shows as active in this copy; it is not ours.
        if LegacyProcessState.forkGeneration.load(ordering: .acquiring) != shim_fork_generation() {
            LegacyProcessState.active.store(false, ordering: .releasing)
        }
        guard LegacyProcessState.active.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
        else { throw .legacyLoopAlreadyActive }
        LegacyProcessState.forkGeneration.store(shim_fork_generation(), ordering: .releasing)
        // Statics are initialised lazily (swift_once, which takes a lock): touch every
        // one the handler reads before the handler can run, never first inside it.
        _ = LegacyProcessState.handlersRunning.load(ordering: .relaxed)
        serial = LegacyProcessState.lastSerial.add(1, ordering: .relaxed).newValue
        LegacyProcessState.loopThreadID.store(shim_gettid(), ordering: .relaxed)
        LegacyProcessState.current.store(
            UInt(bitPattern: Unmanaged.passUnretained(signals).toOpaque()), ordering: .releasing)
        LegacyProcessState.serial.store(serial, ordering: .releasing)
        started = true

        // While the handler runs, SIGPIPE/SIGCHLD/SIGIO are masked, as in the original.
        var handlerMask = sigset_t()
        sigemptyset(&handlerMask)
        for s in [SIGPIPE, SIGCHLD, SIGIO] { sigaddset(&handlerMask, s) }
        var wanted = Self.handledSignals
        if configuration.handlesAdminSignals { wanted += adminSignals }
        for signo in wanted {
            var previous = sigaction()
            // SA_RESTART: other threads' slow syscalls resume; select/pselect never restart anyway.
            if shim_install_handler(signo, legacySignalHandler, &handlerMask, SA_RESTART, &previous) != 0 {
                let err = errno
                stop()
                throw .system(SystemError("sigaction(\(signalName(signo)))", errno: err))
            }
            savedActions.append((signo, previous))
            shim_legacy_handler_installed(signo, legacySignalHandler, &previous)
        }

        // The loop thread takes the signals it handles (a runtime, or
        // `ProcessSignals.prepare`, may have blocked them), except SIGCHLD, which
        // stays blocked outside pselect so that an early wake-up stays pending.
        var wishes = Dictionary(uniqueKeysWithValues: wanted.map { ($0, false) })
        wishes[SIGCHLD] = true
        maskClaim = ThreadSignalMask.claim(wishes)

        do {
            _ = try systemCall("getitimer(ITIMER_REAL)") { getitimer(Int32(ITIMER_REAL.rawValue), &savedRealTimer) }
            _ = try systemCall("getitimer(ITIMER_VIRTUAL)") {
                getitimer(Int32(ITIMER_VIRTUAL.rawValue), &savedVirtualTimer)
            }
        } catch {
            stop()
            throw .system(error)
        }
        setTimersEnabled(true)
    }

    package func prepare(fd: Int32) throws(LoopError) {
        do { try setStatusFlags(fd: fd, adding: O_NONBLOCK | O_ASYNC) } catch { throw .system(error) }
    }

    package func setInterest(fd: Int32, generation: UInt32, old: Interest, new: Interest) throws(LoopError) {
        guard fd >= 0, fd < shim_fd_setsize() else { throw .descriptorOutOfRange(fd: fd, limit: descriptorLimit!) }
        if new.contains(.read) { shim_fd_set(fd, &readSet) } else { shim_fd_clr(fd, &readSet) }
        if new.contains(.write) { shim_fd_set(fd, &writeSet) } else { shim_fd_clr(fd, &writeSet) }
        generations[Int(fd)] = generation
        if new.isEmpty {
            // O_ASYNC was the loop's: do not leave it behind on an fd it no longer watches.
            do {
                let flags = try systemCall("fcntl(F_GETFL)") { fcntl(fd, F_GETFL) }
                if flags & O_ASYNC != 0 {
                    _ = try systemCall("fcntl(F_SETFL)") { fcntl(fd, F_SETFL, flags & ~O_ASYNC) }
                }
            } catch {
                // Deliberately ignored: the owner may have closed the fd already (EBADF),
                // and then there is no flag left behind.
            }
        }
        if !new.isEmpty {
            highestFd = max(highestFd, fd)
        } else if fd == highestFd {
            while highestFd >= 0 && shim_fd_isset(highestFd, &readSet) == 0 && shim_fd_isset(highestFd, &writeSet) == 0
            {
                highestFd -= 1
            }
        }
    }

    package func wait(timeoutMs: Int, into events: inout [ReadyEvent]) throws(LoopError) {
        var readable = readSet
        var writable = writeSet
        // A wake-up published before we got here: do not sleep.
        // The original's select never waits longer than the quickpoll interval.
        let longest = configuration.quickPollIntervalMs
        let timeout =
            signals.needsCleanup.load(ordering: .acquiring) ? 0 : timeoutMs < 0 ? longest : min(timeoutMs, longest)
        var ts = timespec(tv_sec: timeout / 1000, tv_nsec: (timeout % 1000) * 1_000_000)
        // The thread's mask as it is now (another loop or the embedder may have
        // changed it since start), with SIGCHLD open for the wait only. Reading the
        // mask cannot fail (no `how`, a valid set), so its result is not looked at.
        var waitMask = sigset_t()
        pthread_sigmask(SIG_SETMASK, nil, &waitMask)
        sigdelset(&waitMask, SIGCHLD)
        var ready: Int32?
        do {
            ready = try interruptibleSystemCall("pselect") {
                pselect(highestFd + 1, &readable, &writable, nil, &ts, &waitMask)
            }
        } catch  where error.errno == EBADF {
            // One closed number fails the whole call: drop it and ask again at
            // once, so the other descriptors' readiness is not lost for a poll.
            dropClosedDescriptors()
            readable = readSet
            writable = writeSet
            var none = timespec()
            do {
                ready = try interruptibleSystemCall("pselect") {
                    pselect(highestFd + 1, &readable, &writable, nil, &none, &waitMask)
                }
            } catch  where error.errno == EBADF {
                dropClosedDescriptors()
                return
            } catch {
                throw .system(error)
            }
        } catch {
            throw .system(error)
        }
        // nil: a timer tick, a wake-up or an admin signal ended the wait.
        guard let n = ready, n > 0 else { return }
        var fd: Int32 = 0
        while fd <= highestFd {
            let r = shim_fd_isset(fd, &readable) != 0
            let w = shim_fd_isset(fd, &writable) != 0
            if r || w { events.append(ReadyEvent(fd: fd, generation: generations[Int(fd)], readable: r, writable: w)) }
            fd += 1
        }
    }

    /// An owner closed a registered fd without unregistering it; select would
    /// fail with EBADF forever. The kernel forgets such an fd under epoll, so do the same.
    private func dropClosedDescriptors() {
        var fd: Int32 = 0
        while fd <= highestFd {
            if (shim_fd_isset(fd, &readSet) != 0 || shim_fd_isset(fd, &writeSet) != 0) && fcntl(fd, F_GETFD) < 0 {
                shim_fd_clr(fd, &readSet)
                shim_fd_clr(fd, &writeSet)
            }
            fd += 1
        }
    }

    package func pollQuickPollTimer() {
        // SIGVTALRM raises the flag itself.
    }

    package func setTimersEnabled(_ enabled: Bool) {
        var real = itimerval()
        var virtual = itimerval()
        if enabled {
            real.it_interval = Self.interval(ms: configuration.realTimerIntervalMs)
            real.it_value = real.it_interval
            virtual.it_interval = Self.interval(ms: configuration.quickPollIntervalMs)
            virtual.it_value = virtual.it_interval
        }
        Self.setTimer(ITIMER_REAL, &real)
        Self.setTimer(ITIMER_VIRTUAL, &virtual)
    }

    private static func setTimer(_ which: __itimer_which, _ value: inout itimerval) {
        do {
            _ = try systemCall("setitimer") { setitimer(Int32(which.rawValue), &value, nil) }
        } catch {
            // Deliberately ignored: setitimer fails only for a bad timer or value, and
            // both timers are real ones, the values validated by `LoopConfiguration`
            // or read back from the kernel at `start()`.
        }
    }

    private static func interval(ms: Int) -> timeval {
        timeval(tv_sec: ms / 1000, tv_usec: (ms % 1000) * 1000)
    }

    package func setInterruptsEnabled(_ enabled: Bool) {
        // The original blocks an empty signal set here: only the loop's flag changes.
    }

    package func stop() {
        guard started else { return }
        started = false
        setTimersEnabled(false)
        // The mask first: in a prepared process the signals are blocked again before
        // their previous dispositions return, so a SIGHUP arriving now stays pending
        // instead of meeting the default action (terminate) after a clean shutdown.
        if let claim = maskClaim { ThreadSignalMask.release(claim) }
        maskClaim = nil
        // Only what is still this loop's: a disposition someone installed since stays theirs.
        // Results deliberately ignored, in teardown: sigaction fails only for a bad
        // signal number or pointer, and these are the ones `start()` installed.
        for (signo, var previous) in savedActions.reversed() where shim_handler_is(signo, legacySignalHandler) != 0 {
            // Ignoring discards a tick still pending, which would otherwise meet the
            // previous disposition (for SIGALRM by default: terminate).
            if signo == SIGALRM || signo == SIGVTALRM { _ = signal(signo, SIG_IGN) }
            _ = sigaction(signo, &previous, nil)
        }
        savedActions.removeAll()
        shim_legacy_handlers_removed()
        Self.setTimer(ITIMER_REAL, &savedRealTimer)
        Self.setTimer(ITIMER_VIRTUAL, &savedVirtualTimer)
        LegacyProcessState.clear(waitingForHandlers: true)
    }

    /// In a forked child: the atfork handler already gave the signals back their
    /// previous dispositions and the child has no itimers; only the records go,
    /// and the process-wide state only while no loop of the child's own has taken it.
    package func abandon() {
        guard started else { return }
        started = false
        if let claim = maskClaim { ThreadSignalMask.release(claim) }
        maskClaim = nil
        savedActions.removeAll()
        if LegacyProcessState.serial.load(ordering: .acquiring) == serial {
            // No waiting: a handler that ran on another thread at fork time left its
            // count in this copy, and that thread does not exist here.
            LegacyProcessState.clear(waitingForHandlers: false)
        }
    }
}

/// Whether the main thread blocks every one of `signals` for good: blocked in
/// three reads 1 ms apart, since a thread blocks everything for a moment on its
/// own (glibc's `pthread_create` does, around the clone).
func mainThreadKeepsBlocking(_ signals: [Int32]) -> Bool {
    for read in 0..<3 {
        if read > 0 { usleep(1_000) }
        guard mainThreadBlocks(signals) else { return false }
    }
    return true
}

/// Whether the process's main thread blocks every one of `signals` now, read
/// from /proc (one thread cannot ask for another's mask).
func mainThreadBlocks(_ signals: [Int32]) -> Bool {
    guard let file = fopen("/proc/self/task/\(getpid())/status", "r") else { return false }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 256)
    while fgets(&line, Int32(line.count), file) != nil {
        let bytes = line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        let text = String(decoding: bytes, as: UTF8.self)
        guard text.hasPrefix("SigBlk:") else { continue }
        let hex = text.dropFirst("SigBlk:".count).filter { $0.isHexDigit }
        guard let mask = UInt64(hex, radix: 16) else { return false }
        return signals.allSatisfy { mask & (1 << UInt64($0 - 1)) != 0 }
    }
    return false
}

/// A loop on the legacy backend. Only one may exist in a process at a time.
package func makeLegacyLoop(configuration: LoopConfiguration = LoopConfiguration()) throws(LoopError) -> EventLoop {
    try EventLoop(backend: SelectBackend(configuration: configuration), configuration: configuration)
}
