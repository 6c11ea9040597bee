import Glibc
import Synchronization

/// The legacy `Threads`: jobs run on worker threads; each finished job is
/// queued, `needsCleanup` is raised and the loop is woken, and the loop runs
/// the job's completion on its own thread (`EventLoop.submit`).
final class WorkerPool: Sendable {
    struct Job: Sendable {
        let id: UInt64
        let niceness: Int
        let work: @Sendable () -> any Sendable
    }

    struct Finished: Sendable {
        let id: UInt64
        let niceness: Int
        let result: any Sendable
    }

    private struct State {
        var queue = FifoQueue<Job>()
        /// Finished jobs in finishing order, urgent (niceness 0) and background apart,
        /// so taking either kind costs only what is taken.
        var finishedUrgent = FifoQueue<Finished>()
        var finishedBackground = FifoQueue<Finished>()
        var stopping = false
        var threads: [pthread_t] = []
    }

    private let state = Lock(State())
    /// Finished jobs not yet taken, readable without the lock (the loop asks several times a poll).
    private let finishedCount = Atomic<Int>(0)
    private let jobAvailable = Semaphore()
    private let signals: LoopSignals
    private let waker: any LoopWaker

    init(threads: Int, signals: LoopSignals, waker: any LoopWaker) {
        self.signals = signals
        self.waker = waker
        var handles: [pthread_t] = []
        for _ in 0..<max(threads, 1) {
            handles.append(startThread(blocking: loopOwnedSignals) { [self] in self.workerMain() })
        }
        state.withLock { $0.threads = handles }
    }

    func submit(_ job: Job) {
        state.withLock { $0.queue.append(job) }
        jobAvailable.signal()
    }

    /// Takes up to `limit` finished jobs, urgent ones first; only urgent ones when `urgentOnly`.
    func takeFinished(urgentOnly: Bool, limit: Int) -> [Finished] {
        let taken: [Finished] = state.withLock { s in
            var taken: [Finished] = []
            taken.reserveCapacity(min(limit, s.finishedUrgent.count + s.finishedBackground.count))
            while taken.count < limit, let f = s.finishedUrgent.popFirst() { taken.append(f) }
            if !urgentOnly {
                while taken.count < limit, let f = s.finishedBackground.popFirst() { taken.append(f) }
            }
            return taken
        }
        finishedCount.subtract(taken.count, ordering: .relaxed)
        return taken
    }

    /// Sequentially consistent: the loop clears `needsCleanup` and then asks here, the
    /// worker counts and then raises it; with weaker orderings both could miss the other
    /// and the loop sleep on a finished job (there is no tick to bound that).
    var hasFinished: Bool { finishedCount.load(ordering: .sequentiallyConsistent) > 0 }
    var finishedJobs: Int { finishedCount.load(ordering: .acquiring) }

    func shutdown() {
        let threads = state.withLock { s -> [pthread_t] in
            s.stopping = true
            return s.threads
        }
        for _ in threads { jobAvailable.signal() }
        for t in threads { joinThread(t) }
    }

    private func workerMain() {
        while true {
            jobAvailable.wait()
            let next: Job? = state.withLock { s in
                if s.stopping { return nil }
                return s.queue.popFirst()
            }
            guard let job = next else {
                if state.withLock({ $0.stopping }) { return }
                continue
            }
            let result = job.work()
            let done = Finished(id: job.id, niceness: job.niceness, result: result)
            state.withLock { s in
                if job.niceness == 0 { s.finishedUrgent.append(done) } else { s.finishedBackground.append(done) }
            }
            finishedCount.add(1, ordering: .releasing)
            // Publish before waking: the loop checks the flag before it waits. A flag
            // already raised means a wake-up is on its way (the loop clears the flag
            // before it takes the finished jobs), so one per batch is enough.
            if !signals.needsCleanup.exchange(true, ordering: .sequentiallyConsistent) {
                waker.wakeup()
            }
        }
    }
}

/// A counting semaphore on a pthread mutex and condition variable.
final class Semaphore: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var count = 0

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        cond.deallocate()
    }

    func signal() {
        pthread_mutex_lock(mutex)
        count += 1
        pthread_cond_signal(cond)
        pthread_mutex_unlock(mutex)
    }

    func wait() {
        pthread_mutex_lock(mutex)
        while count == 0 { pthread_cond_wait(cond, mutex) }
        count -= 1
        pthread_mutex_unlock(mutex)
    }
}
