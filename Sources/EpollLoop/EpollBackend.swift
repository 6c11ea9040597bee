import Glibc
import LoopCore

/// The new design: level-triggered `epoll_wait` (`EpollInterestSet`); a 10 ms
/// quickpoll timerfd and a 1 ms real timerfd, neither in the epoll set and both
/// stopped while the loop sleeps, so an idle loop wakes only for its own
/// deadlines (`EpollTimerClock`); an eventfd for wake-ups (`WakeupDescriptor`);
/// a signalfd for the admin signals, SIGPIPE and SIGIO (`EpollSignalReader`).
/// No `select`, no `setitimer`, no signal handlers.
package final class EpollBackend: LoopBackend {
    package let kind = LoopBackendKind.epoll
    package let descriptorLimit: Int32? = nil
    package let signals = LoopSignals()
    /// SIGCHLD is the program's (not in the signalfd): each watched child gets a pidfd.
    package let reportsChildExitsBySignal = false
    /// Wakers keep the eventfd alive (see `WakeupDescriptor`).
    package var waker: any LoopWaker { EventFDWaker(target: wake) }

    private let configuration: LoopConfiguration
    private let interests = EpollInterestSet()
    private let clock: EpollTimerClock
    private let signalReader: EpollSignalReader
    private let wake: WakeupDescriptor

    /// The parts that need no descriptor of the loop's thread; `start` opens the rest.
    package init(configuration: LoopConfiguration = LoopConfiguration()) throws(LoopError) {
        self.configuration = configuration
        do { wake = try WakeupDescriptor() } catch { throw .system(error) }
        clock = EpollTimerClock(signals: signals, configuration: configuration)
        signalReader = EpollSignalReader(signals: signals, handlesAdminSignals: configuration.handlesAdminSignals)
    }

    package func start() throws(LoopError) {
        do {
            try interests.open()
            try clock.open()
            try signalReader.open()
            try interests.addControls([(.wake, wake.fd), (.signal, signalReader.fd)])
            clock.setEnabled(true)
        } catch {
            stop()
            throw .system(error)
        }
    }

    package func prepare(fd: Int32) throws(LoopError) {
        do { try setStatusFlags(fd: fd, adding: O_NONBLOCK) } catch { throw .system(error) }
    }

    package func setInterest(fd: Int32, generation: UInt32, old: Interest, new: Interest) throws(LoopError) {
        try interests.setInterest(fd: fd, generation: generation, new: new)
    }

    package func wait(timeoutMs: Int, into events: inout [ReadyEvent]) throws(LoopError) {
        let timeoutMs = interests.timeout(forWaitOf: timeoutMs)
        clock.beforeWait(idle: timeoutMs < 0 || timeoutMs > configuration.quickPollIntervalMs)
        let reported: Int?
        do { reported = try interests.wait(timeoutMs: timeoutMs) } catch {
            clock.afterWait()
            throw .system(error)
        }
        clock.afterWait()
        guard let reported else { return }
        interests.collect(reported, into: &events) { control in
            switch control {
            case .wake: if wake.take() { signals.wakeups.add(1, ordering: .relaxed) }
            case .signal: signalReader.drain()
            case nil: break
            }
        }
    }

    package func pollQuickPollTimer() {
        clock.pollQuickPollTimer()
    }

    package func setTimersEnabled(_ enabled: Bool) {
        clock.setEnabled(enabled)
    }

    package func setInterruptsEnabled(_ enabled: Bool) {
        // No asynchronous signal handlers: nothing to mask.
    }

    package func stop() {
        signalReader.stop()
        clock.close()
        interests.close()
    }

    package func abandon() {
        signalReader.abandon()
        clock.close()
        interests.close()
    }
}

/// A loop on the epoll backend.
package func makeEpollLoop(configuration: LoopConfiguration = LoopConfiguration()) throws(LoopError) -> EventLoop {
    try EventLoop(backend: EpollBackend(configuration: configuration), configuration: configuration)
}
