@_spi(LoopInternals) import LoopCore

/// Shutting down: stop taking work, drain, close.
extension UdpServer {
    /// Stops taking new requests: new incoming requests are dropped and
    /// `sendRequest` ends at once with `.shuttingDown`. Transactions in progress
    /// finish (or time out) unless `urgent`, which ends them now, requests with
    /// `.shuttingDown`. A transaction waiting on the network gets a timeout of at most
    /// `shutdownIncomingTimeoutMs` (incoming) or `shutdownOutgoingTimeoutMs` (outgoing)
    /// since its last progress, as the original cuts them to 3 s and 4 s, so a stalled
    /// peer cannot hold the drain for a minute: one stalled longer ends at the next scan.
    /// Requests waiting on this server's own handlers keep theirs. Once none is left the socket is closed and `whenDrained`
    /// runs (on the loop thread, after every request callback queued before it).
    public func shutdown(urgent: Bool = false, whenDrained: (() -> Void)? = nil) {
        if let whenDrained {
            if isDrained {
                callbackQueues[1].append(.drained(whenDrained))
            } else {
                drainedCallbacks.append(whenDrained)
            }
        }
        isShuttingDown = true
        resumeTimePoll()
        for transaction in slots.values { cutTimeoutForShutdown(transaction) }
        if urgent {
            for transaction in slots.values.sorted(by: { $0.serial < $1.serial }) {
                if transaction.isRequester {
                    finish(transaction, .failure(.shuttingDown))
                } else {
                    remove(transaction)
                }
            }
        }
        checkDrained()
    }

    /// The original's `shutdown()`: "set all timeouts to 3 secs" (for incoming slots).
    static let shutdownIncomingTimeoutMs: Int64 = 3_000
    /// The original's `readTimeoutPoll` while shutting down: "set all timeouts to 4 secs".
    static let shutdownOutgoingTimeoutMs: Int64 = 4_000

    /// While shutting down, a transaction waiting on the network gets the short timeout;
    /// one waiting on this server's handler keeps its own (the original skips those too),
    /// and gets the short one when its reply starts.
    func cutTimeoutForShutdown(_ transaction: Transaction) {
        guard isShuttingDown else { return }
        switch transaction.phase {
        case .awaitingHandler, .handling, .finished: return
        default: break
        }
        let cut = transaction.isRequester ? Self.shutdownOutgoingTimeoutMs : Self.shutdownIncomingTimeoutMs
        transaction.timeoutMs = min(transaction.timeoutMs, cut)
    }

    func checkDrained() {
        guard isShuttingDown, !isDrained, slots.isEmpty else { return }
        closeSocket()
        isDrained = true
        for callback in drainedCallbacks { callbackQueues[1].append(.drained(callback)) }
        drainedCallbacks.removeAll()
    }

    /// Unregisters from the loop and closes the socket once the loop's current
    /// batch of events is dispatched (so no event of it reaches a reused fd).
    func closeSocket() {
        flushSends() // what was sent before the close leaves first
        if let registration = sleepRegistration { try? loop.unregister(registration) }
        sleepRegistration = nil
        writeRegistration = nil // closeAfterBatch unregisters it with the read callback
        heldDatagrams.removeAll()
        guard let socket else { return }
        self.socket = nil
        do {
            try loop.closeAfterBatch(fd: socket.fd)
        } catch {
            closeDescriptor(socket.fd) // wrong thread or closed loop: close it ourselves
        }
    }
}
