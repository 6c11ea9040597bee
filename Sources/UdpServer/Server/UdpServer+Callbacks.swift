@_spi(LoopInternals) import LoopCore

/// Callbacks of finished transactions: handler calls and request callbacks.
extension UdpServer {
    /// The original's `needBottom`: callbacks are waiting, so the loop should run
    /// the bottom half at the top of its next poll (and not sleep before it). In a
    /// quickpoll only urgent callbacks may run, and a batch that a quickpolling callback
    /// filled may leave.
    var needsBottomHalf: Bool {
        !sendBatch.isEmpty || !callbackQueues[0].isEmpty || (!callbackQueues[1].isEmpty && !loop.inQuickPoll)
    }

    /// Runs waiting callbacks, niceness 0 first. Niceness > 0 ones are held back
    /// while the loop is in quickpoll (they may be long and may quickpoll
    /// themselves); the bottom half runs them on the loop's next full poll.
    /// Items are taken off the queue before they run, so a callback that
    /// re-enters the server (or the loop) never sees one twice. What was sent before
    /// (ACKs, resends, given-back datagrams) leaves first: no callback holds it.
    func makeCallbacks() {
        flushSends()
        while true {
            if let item = callbackQueues[0].popFirst() {
                run(item)
                flushIfHeldLong()
                continue
            }
            guard !callbackQueues[1].isEmpty else { return }
            if loop.inQuickPoll {
                counters.callbacksHeldBack += 1
                return
            }
            if let item = callbackQueues[1].popFirst() {
                run(item)
                flushIfHeldLong()
            }
        }
    }

    func bottomHalf() {
        asLoopCallback {
            makeCallbacks()
            checkDrained()
        }
    }

    private func run(_ item: CallbackItem) {
        switch item {
        case .reply(let callback, let result):
            counters.requestsCompleted += 1
            callback(result)
        case .request(let transaction):
            callHandler(for: transaction)
        case .drained(let callback):
            callback()
        }
    }

    private func callHandler(for transaction: Transaction) {
        // An urgent shutdown or a timeout may have ended it while it waited.
        guard transaction.phase == .awaitingHandler, let message = transaction.incoming else { return }
        transaction.phase = .handling
        let payload = message.takeBytes()
        releaseIncoming(transaction)
        let request = IncomingRequest(
            type: transaction.type, payload: payload, peer: transaction.key.peer,
            niceness: transaction.niceness, transactionId: transaction.key.transactionId,
            key: transaction.key, serial: transaction.serial)
        if let handler = handlers[Int(transaction.type)] {
            counters.handlerCalls += 1
            handler(request)
        } else {
            counters.unhandledRequests += 1
            try? sendErrorReply(errno: RemoteErrno.noHandler, to: request)
        }
    }
}
