import CLoopShim
import Glibc

/// Stopping, waking and closing the loop.
extension EventLoop {
    /// Asks `run()` to return `.stopped` after the current iteration. Loop thread only;
    /// from elsewhere use `stopHandle`.
    public func stop() {
        signals.requestShutdown(.stopped)
    }

    /// The shutdown requested and not yet consumed, if any (see `takeShutdownRequest`).
    public var shutdownReason: ShutdownReason? { signals.shutdownReason }

    /// Consumes the next shutdown request, as `run()` does when it returns it. A
    /// program that drives the loop with `runOnce()` calls this when it acts on a
    /// request: one left unconsumed is handed back to the process by `close()`.
    public func takeShutdownRequest() -> ShutdownReason? { signals.takeShutdownRequest() }

    /// A Sendable handle other threads use to wake or stop the loop. Safe at any
    /// time, also after `close()` (it then reaches nothing) and in a forked child
    /// (where it does nothing: the loop is the parent's).
    public var stopHandle: LoopStopHandle {
        LoopStopHandle(signals: signals, waker: backend.waker, forkGeneration: forkGeneration)
    }

    /// Wakes the loop from any thread; the same guarantees as `stopHandle`.
    public var waker: any LoopWaker { stopHandle }

    /// Tears the loop down: stops the workers, releases every callback and
    /// undoes every process-wide change the backend made. Registered fds are left
    /// open; they belong to their owners. Every admin signal recorded but never
    /// consumed (by `run()` or `takeShutdownRequest()`) is handed back to the
    /// process (raised again), so the embedder's own disposition sees it.
    /// In a forked child it only releases the child's copies of the descriptors.
    public func close() throws(LoopError) {
        if !isForkedChild { try checkThread("close") }
        guard !isClosed else { return }
        closeResources()
    }

    /// Safe against re-entrancy: everything is taken out of the loop before
    /// anything is released, so a deinit that runs meanwhile and unregisters,
    /// removes a bottom half, submits or closes finds a consistent, closed loop.
    func closeResources() {
        isClosed = true
        let forkedChild = isForkedChild
        let unrun = jobs.close(forkedChild: forkedChild)
        let closes = pendingCloses
        pendingCloses = []
        for fd in closes { closeDescriptor(fd) }

        let children = removeAllChildWatches()
        let (entries, sleeping) = table.removeAll()
        let halves = bottomHalves
        bottomHalves = []
        var callbacks: [Any] = []
        for entry in entries {
            for r in (entry?.reads ?? []) + (entry?.writes ?? []) { if let c = r.detach() { callbacks.append(c) } }
        }
        for r in sleeping { if let c = r.detach() { callbacks.append(c) } }
        for half in halves { half.isActive = false }

        if forkedChild {
            backend.abandon()
        } else {
            backend.stop()
            for signo in signals.takeAllShutdownSignals() { kill(getpid(), signo) }
        }
        withExtendedLifetime((entries, sleeping, unrun, halves, callbacks, children)) {}
    }
}

/// Stops or wakes a loop from any thread. In a forked child it does nothing:
/// the loop, and the eventfd or thread it would reach, are the parent's.
public struct LoopStopHandle: LoopWaker {
    let signals: LoopSignals
    let backendWaker: any LoopWaker
    let forkGeneration: Int32

    init(signals: LoopSignals, waker: any LoopWaker, forkGeneration: Int32) {
        self.signals = signals
        self.backendWaker = waker
        self.forkGeneration = forkGeneration
    }

    /// Asks the loop's `run()` to return `.stopped`, and wakes it to do so.
    public func stop() {
        guard shim_fork_generation() == forkGeneration else { return }
        signals.requestShutdown(.stopped)
        backendWaker.wakeup()
    }

    /// Ends the loop's current or next wait.
    public func wakeup() {
        guard shim_fork_generation() == forkGeneration else { return }
        backendWaker.wakeup()
    }
}
