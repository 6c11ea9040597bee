import CLoopShim
import Glibc
import LoopCore

/// The epoll loop's two timers: a quickpoll timerfd (10 ms) and a real timerfd
/// (1 ms) on CLOCK_MONOTONIC, the second feeding the CPU-usage average. Neither
/// is in the epoll set: the quickpoll timer is read at the QUICKPOLL call site,
/// the real timer around each wait (busy and idle ticks), so neither costs a
/// wake-up.
///
/// Two modes while the timers are enabled. Running: both timerfds armed, the real
/// timer's expirations read around each wait (busy before, idle after), the quickpoll
/// timer's at the QUICKPOLL call site. Stopped: neither armed, so an idle loop costs
/// the kernel no timer interrupts and itself no syscalls per wake-up; the CPU average
/// is fed from the clock instead (time outside waits busy, inside idle, in whole real-
/// timer ticks). A wait longer than the quickpoll interval stops them; a shorter one
/// (timed work) or busy work that reaches a QUICKPOLL call site a whole interval after
/// its wait starts them again.
final class EpollTimerClock {
    private let signals: LoopSignals
    private let configuration: LoopConfiguration
    private var quickTimerFD: Int32 = -1
    private var realTimerFD: Int32 = -1
    /// False between `setEnabled(false)` and `setEnabled(true)`, and once closed.
    @exclusivity(unchecked) private var timersArmed = false
    /// Before this instant (ns) the quickpoll timer cannot have expired: no syscall needed.
    @exclusivity(unchecked) private var nextQuickPollCheck: Int64 = 0
    @exclusivity(unchecked) private var nextRealTimerRead: Int64 = 0
    /// Whether the timerfds are armed (running mode), and in stopped mode how far
    /// the CPU average has been fed from the clock (ns).
    @exclusivity(unchecked) private var timersRunning = false
    @exclusivity(unchecked) private var clockAccountedUntil: Int64 = 0

    init(signals: LoopSignals, configuration: LoopConfiguration) {
        self.signals = signals
        self.configuration = configuration
    }

    /// Creates both timerfds, disarmed.
    func open() throws(SystemError) {
        quickTimerFD = try systemCall("timerfd_create") {
            timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK | TFD_CLOEXEC))
        }
        realTimerFD = try systemCall("timerfd_create") {
            timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK | TFD_CLOEXEC))
        }
    }

    /// Arms (running mode) or disarms both timers, around fork/exec of children.
    func setEnabled(_ enabled: Bool) {
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

    /// Before a wait: the time since the last one was work. A long (idle) wait stops the timers.
    func beforeWait(idle: Bool) {
        guard timersArmed else { return }
        if timersRunning {
            collectRealTimerTicks(busy: true)
            if idle { stopTimers() }
        } else {
            accountByClock(busy: true)
            if !idle { startTimers() }
        }
    }

    /// After a wait: the wait was idle time, and its quickpoll ticks are not the work's.
    func afterWait() {
        guard timersArmed else { return }
        if timersRunning {
            collectRealTimerTicks(busy: false)
            takeQuickPollTicksOfTheWait()
        } else {
            accountByClock(busy: false)
            restartQuickPollInterval()
        }
    }

    /// Busy work cannot wait in epoll_wait, so the QUICKPOLL call site asks
    /// here: a vDSO clock read, and only once an interval may have passed, a
    /// non-blocking read of the quickpoll timerfd.
    func pollQuickPollTimer() {
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

    /// Closes both timerfds; the timers are off for good.
    func close() {
        timersArmed = false
        for fd in [realTimerFD, quickTimerFD] { closeDescriptor(fd) }
        realTimerFD = -1
        quickTimerFD = -1
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

    /// Expirations are read only here, so several may have gathered over many
    /// iterations: `nowApprox` is set from the clock, not advanced per expiration.
    private func quickPollTick(_ count: Int) {
        guard count > 0 else { return }
        signals.quickPollTick(count: count, now: configuration.clock.milliseconds())
        restartQuickPollInterval()
    }

    /// Number of expirations since the last read; 0 when none.
    private static func expirations(_ fd: Int32) -> Int {
        var count: UInt64 = 0
        return readRecord(fd, &count) ? Int(count) : 0
    }

    /// A period of `ms` (0: disarmed), its first expiration a whole period from now.
    private func arm(_ fd: Int32, ms: Int) {
        guard fd >= 0 else { return }
        let period = timespec(tv_sec: ms / 1000, tv_nsec: (ms % 1000) * 1_000_000)
        var spec = itimerspec(it_interval: period, it_value: period)
        do {
            _ = try systemCall("timerfd_settime") { timerfd_settime(fd, 0, &spec, nil) }
        } catch {
            // Deliberately ignored: it fails only for a bad descriptor or value, and the
            // descriptor is the clock's own and open (checked above), the value validated
            // by `LoopConfiguration`; there is nothing else a timer could be armed with.
        }
    }
}
