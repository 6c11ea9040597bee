import Compat

/// Outgoing exchanges waiting for a descriptor number the loop can watch. On the
/// legacy loop select() watches numbers below 1024 only: with the lower numbers all
/// taken (by many connections at once, or by the rest of the process), a new socket is
/// numbered past the limit, and failing its exchange ("descriptor 1024 is out of
/// range") failed fetches that only had to wait for a connection to close.
final class DescriptorWaits {
    struct Waiting {
        let asked: ExchangeRequest
        let completion: (Result<[UInt8], TcpError>) -> Void
    }

    /// First come, first connected.
    var queue: [Waiting] = []
    /// Try again at the next poll: a connection went back to the pool.
    var retryNow = false
    /// The server's connections after the last try: fewer now means descriptors were freed.
    var connectionsAtLastTry = 0
    /// Exchanges that had to wait, over the server's life (what a test counts).
    var waited = 0
    /// Tries again now and then, for descriptors freed by others than this server.
    var timer: Registration?
    var timerPaused = false
    var bottomHalf: BottomHalf?
}

extension TcpServer {
    /// Queues `asked` until a descriptor below the loop's limit is free.
    func waitForDescriptor(
        _ asked: ExchangeRequest, _ completion: @escaping (Result<[UInt8], TcpError>) -> Void,
        atFront: Bool
    ) throws(TcpError) {
        let waits = descriptorWaits
        do {
            if waits.timer == nil {
                waits.timer = try loop.registerSleep(every: configuration.scanIntervalMs, niceness: 0) { [weak self] in
                    self?.retryWaitingExchanges()
                }
                waits.bottomHalf = try loop.addBottomHalf(
                    needed: { [weak self] in self?.descriptorMayBeFree ?? false },
                    run: { [weak self] in self?.retryWaitingExchanges() })
            } else if waits.timerPaused, let timer = waits.timer {
                try loop.resumeSleep(timer)
            }
            waits.timerPaused = false
        } catch {
            throw .refusedByLoop(error)
        }
        let waiting = DescriptorWaits.Waiting(asked: asked, completion: completion)
        if atFront { waits.queue.insert(waiting, at: 0) } else { waits.queue.append(waiting) }
        if !atFront { waits.waited += 1 }
        waits.connectionsAtLastTry = connections.count
        // An idle keep-alive connection (to another peer: this one's would have been taken)
        // holds a number a waiting exchange needs more.
        if let idle = pool.values.joined().min(by: { $0.lastAction < $1.lastAction }) { destroy(idle) }
    }

    /// A connection of this server closed since the last try (its descriptor is free by
    /// the next poll, when bottom halves run), or one went back to the pool.
    private var descriptorMayBeFree: Bool {
        let waits = descriptorWaits
        return !waits.queue.isEmpty && (waits.retryNow || connections.count < waits.connectionsAtLastTry)
    }

    /// Ends the waiting exchanges past their timeout (no byte has moved since they were
    /// asked for) or deadline, then starts the others in order while descriptors are free.
    func retryWaitingExchanges() {
        let waits = descriptorWaits
        waits.retryNow = false
        let now = loop.now
        var expired: [(DescriptorWaits.Waiting, TcpError)] = []
        waits.queue.removeAll { waiting in
            if let deadline = waiting.asked.deadline, now >= deadline {
                expired.append((waiting, .deadlinePassed))
            } else if now - waiting.asked.askedAt >= Int64(waiting.asked.timeoutMs) {
                expired.append((waiting, .timedOut))
            } else {
                return false
            }
            return true
        }
        while !isClosed, !waits.queue.isEmpty {
            let next = waits.queue.removeFirst()
            do {
                if try !start(next.asked, next.completion, atFront: true) { break }
            } catch {
                stats.exchangesFailed += 1
                next.completion(.failure(error))
            }
        }
        waits.connectionsAtLastTry = connections.count
        pauseWaitTimerIfIdle()
        for (waiting, error) in expired {
            stats.timedOut += 1
            stats.exchangesFailed += 1
            waiting.completion(.failure(error))
        }
    }

    private func pauseWaitTimerIfIdle() {
        let waits = descriptorWaits
        guard waits.queue.isEmpty, !waits.timerPaused, let timer = waits.timer else { return }
        try? loop.pauseSleep(timer)
        waits.timerPaused = true
    }

    /// The server is closing: every waiting exchange ends with `.shuttingDown`.
    func endWaitingExchanges() {
        let waits = descriptorWaits
        if let timer = waits.timer { try? loop.unregister(timer) }
        if let half = waits.bottomHalf { try? loop.removeBottomHalf(half) }
        waits.timer = nil
        waits.bottomHalf = nil
        let ended = waits.queue
        waits.queue = []
        for waiting in ended {
            stats.exchangesFailed += 1
            waiting.completion(.failure(.shuttingDown))
        }
    }
}
