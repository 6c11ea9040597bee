/// The worker jobs of one loop whose completion has not run yet, and the pool
/// that runs them (started with the first job).
///
/// A class, not a struct in the loop: a completion may submit again, or close
/// the loop, while `runFinished` walks the finished jobs.
final class JobCompletions {
    private let threads: Int
    private let signals: LoopSignals
    @exclusivity(unchecked) private var workers: WorkerPool?
    private var nextJobID: UInt64 = 0
    @exclusivity(unchecked) private var pending: [UInt64: (any Sendable) -> Void] = [:]

    init(threads: Int, signals: LoopSignals) {
        self.threads = threads
        self.signals = signals
    }

    /// Jobs submitted whose completion has not run yet.
    var pendingCount: Int { pending.count }

    /// Jobs a worker has finished whose completion has not run yet.
    var finishedCount: Int { workers?.finishedJobs ?? 0 }

    /// Queues `work` for a worker; `completion` waits for `runFinished`.
    func submit<T: Sendable>(
        niceness: Int, _ work: @escaping @Sendable () -> T,
        completion: @escaping (T) -> Void, waker: @autoclosure () -> any LoopWaker
    ) {
        if workers == nil {
            workers = WorkerPool(threads: threads, signals: signals, waker: waker())
        }
        nextJobID += 1
        let id = nextJobID
        pending[id] = { completion($0 as! T) }
        workers!.submit(.init(id: id, niceness: niceness, work: { work() }))
    }

    /// The original's `timedCleanUp`: hands finished jobs' completions to `run`
    /// (with the job's niceness) until the budget is spent.
    func runFinished(budgetMs: Int64, urgentOnly: Bool, _ run: (_ niceness: Int, _ completion: () -> Void) -> Void) {
        guard let workers else {
            // A SIGCHLD from a child process, not a worker: nothing to collect.
            signals.needsCleanup.store(false, ordering: .relaxed)
            return
        }
        if !urgentOnly || !workers.hasFinished {
            // Clear before taking, so a job finishing meanwhile raises it again (and wakes us).
            signals.needsCleanup.store(false, ordering: .sequentiallyConsistent)
        }
        guard workers.hasFinished else { return }
        let deadline = monotonicNanoseconds() + budgetMs * 1_000_000
        while true {
            let finished = workers.takeFinished(urgentOnly: urgentOnly, limit: 16)
            if finished.isEmpty { break }
            for job in finished {
                guard let completion = pending.removeValue(forKey: job.id) else { continue }
                run(job.niceness) { completion(job.result) }
            }
            if monotonicNanoseconds() >= deadline { break }
        }
        if workers.hasFinished { signals.needsCleanup.store(true, ordering: .relaxed) }
    }

    /// Stops the workers and hands back the completions that will never run, for
    /// the loop to release last. In a forked child the pool is left alone: its
    /// threads are the parent's, and its lock and condition may be held by threads
    /// that do not exist here, so it is never joined and never freed.
    func close(forkedChild: Bool) -> [UInt64: (any Sendable) -> Void] {
        if let workers {
            if forkedChild {
                _ = Unmanaged.passRetained(workers)
            } else {
                workers.shutdown()
            }
        }
        workers = nil
        let taken = pending
        pending = [:]
        return taken
    }
}
