/// The sleep callback: resends and timeouts.
extension UdpServer {
    /// Runs every `pollTimeMs` (the original's `timePoll`): ends transactions that
    /// made no progress for their timeout, and queues unacknowledged datagrams
    /// whose resend time has passed.
    func timePoll() {
        let now = currentTime()
        flushHeldDatagrams()
        var expired: [Transaction] = []
        for transaction in slots.values {
            // The loop's clock may be wall time, which can step back: never wait for it to catch up.
            transaction.lastProgress = min(transaction.lastProgress, now)
            transaction.lastSend = min(transaction.lastSend, now)
            if now - transaction.lastProgress >= transaction.timeoutMs {
                expired.append(transaction)
                continue
            }
            guard transaction.isSending, let message = transaction.outgoing, message.inFlight > 0,
                  now - transaction.lastSend >= Int64(transaction.resendTimeMs) else { continue }
            let cleared = message.prepareForResend()
            transaction.lastSend = now
            guard cleared > 0 else { continue }
            counters.resends += cleared
            transaction.resendCount += 1
            transaction.resendTimeMs = resendTime(for: transaction)
            queueForSend(transaction)
        }
        // In start order, so callbacks of requests that expire together run in that order.
        for transaction in expired.sorted(by: { $0.serial < $1.serial }) {
            counters.timeouts += 1
            if transaction.isRequester {
                finish(transaction, .failure(.timedOut))
            } else {
                remove(transaction)
            }
        }
        finishedTransactions.expire(before: now - Int64(configuration.finishedMemoryMs))
        sendPoll()
        makeCallbacks()
        checkDrained()
    }
}
