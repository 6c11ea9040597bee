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
        var queue: [Job] = []
        var finished: [Finished] = []
        var stopping = false
        var threads: [pthread_t] = []
    }

    private let state = Mutex(State())
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

    /// Takes finished jobs, urgent ones only when `urgentOnly`.
    func takeFinished(urgentOnly: Bool, limit: Int) -> [Finished] {
        state.withLock { s in
            var taken: [Finished] = []
            var kept: [Finished] = []
            for f in s.finished {
                if taken.count < limit && (!urgentOnly || f.niceness == 0) { taken.append(f) } else { kept.append(f) }
            }
            s.finished = kept
            return taken
        }
    }

    var hasFinished: Bool { state.withLock { !$0.finished.isEmpty } }

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
                return s.queue.isEmpty ? nil : s.queue.removeFirst()
            }
            guard let job = next else {
                if state.withLock({ $0.stopping }) { return }
                continue
            }
            let result = job.work()
            state.withLock { $0.finished.append(Finished(id: job.id, niceness: job.niceness, result: result)) }
            // Publish before waking: the loop checks the flag before it waits.
            signals.needsCleanup.store(true, ordering: .releasing)
            waker.wakeup()
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
