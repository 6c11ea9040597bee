/// The sleep callback: resends and timeouts.
extension UdpServer {
    /// Runs every `pollTimeMs` (the original's `timePoll`): ends transactions that
    /// made no progress for their timeout, queues unacknowledged datagrams whose
    /// resend time has passed, sends a whole request again when its reply is long
    /// in coming, and gives up replies that only a forged source could be asking for.
    func timePoll() {
        asLoopCallback(scanTransactions)
        if !needsTimePoll, let poll = sleepRegistration {
            try? loop.pauseSleep(poll)
            timePollPaused = true
        }
    }

    private func scanTransactions() {
        let now = currentTime()
        socketIsFull = false // in case no write callback could be registered
        sendHeldDatagrams()
        var expired: [Transaction] = []
        var abandoned: [Transaction] = []
        for transaction in slots.values {
            // The loop's clock may be wall time, which can step back: never wait for it to catch up.
            transaction.lastProgress = min(transaction.lastProgress, now)
            transaction.lastHeard = min(transaction.lastHeard, now)
            transaction.lastSend = min(transaction.lastSend, now)
            if now - timeoutStart(of: transaction) >= transaction.timeoutMs {
                expired.append(transaction)
                continue
            }
            if transaction.phase == .awaitingReply || transaction.phase == .receivingReply {
                if transaction.phase == .awaitingReply,
                    now - transaction.lastHeard >= Int64(configuration.requestResendAfterMs)
                {
                    resendWholeRequest(transaction, at: now)
                } else if now - max(transaction.lastHeard, transaction.lastSend) >= replyPokeWaitMs(transaction) {
                    pokeForReply(transaction, at: now)
                }
                continue
            }
            guard transaction.isSending, let message = transaction.outgoing, message.inFlight > 0,
                now - transaction.lastSend >= Int64(transaction.resendTimeMs)
            else { continue }
            if !transaction.isRequester && !mayResend(transaction, message, at: now) {
                // Held, not resent, until the requester asks again; given up after a silence.
                if now - transaction.lastHeard >= Int64(configuration.strangerReplyHoldMs) {
                    abandoned.append(transaction)
                }
                continue
            }
            let cleared = message.prepareForResend()
            transaction.lastSend = now
            guard cleared > 0 else { continue }
            counters.resends += cleared
            transaction.resendCount += 1
            transaction.resendTimeMs = resendTime(for: transaction)
            queueForSend(transaction)
        }
        for transaction in abandoned.sorted(by: { $0.serial < $1.serial }) {
            counters.repliesAbandoned += 1
            noteDrop(.replyAbandoned, from: transaction.key.peer.ip)
            remove(transaction)
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
        if let line = dropLog.line(at: now, intervalMs: configuration.dropLogIntervalMs) { configuration.log?(line) }
        sendPoll()
        makeCallbacks()
        checkDrained()
    }

    /// What the time poll is for: transactions to resend or time out, datagrams a loss
    /// filter holds, drops not yet logged, a drain. Without any, an idle server costs
    /// its loop no wake-ups (the finished-request memory expires as it grows instead).
    var needsTimePoll: Bool {
        !slots.isEmpty || !heldDatagrams.isEmpty || dropLog.hasPending || (isShuttingDown && !isDrained)
    }

    /// Called where the poll gets something to do.
    func resumeTimePoll() {
        guard timePollPaused, let poll = sleepRegistration else { return }
        timePollPaused = false
        try? loop.resumeSleep(poll)
    }

    func noteDrop(_ reason: DropLog.Reason, from ip: UInt32) {
        dropLog.note(reason, from: ip)
        resumeTimePoll()
    }
}

extension UdpServer {
    /// Whether a reply may be resent. A transaction the peer acknowledged, an address
    /// that answered one of this server's own requests (an id it could not have guessed),
    /// or a member of the admission rule, is resent as long as it takes. Otherwise the source may be forged: the first resend
    /// is allowed (one lost datagram must not cost a real first contact its reply), further
    /// ones only while everything sent stays within `unacknowledgedReplyFactor` times what
    /// that source sent, so it reflects a small factor, not a minute of resends.
    func mayResend(_ transaction: Transaction, _ message: OutgoingMessage, at now: Int64) -> Bool {
        if receivesAtItsAddress(transaction, at: now) { return true }
        if transaction.resendCount == 0 { return true }
        if transaction.resendCredits > 0 {
            transaction.resendCredits -= 1
            return true
        }
        let resend = message.unacknowledgedBytes(geometry: transaction.geometry)
        return transaction.bytesSent + resend <= configuration.unacknowledgedReplyFactor * transaction.bytesHeard
    }

    /// How long a requester waits, its request acknowledged, before asking for the reply
    /// again: twice its resend time, doubled per ask, at most the whole re-send's wait.
    func replyPokeWaitMs(_ transaction: Transaction) -> Int64 {
        let base = Int64(2 * max(transaction.resendPolicy.resendTimeMs(afterResends: 0) { _ in 0 }, 1))
        let wait = transaction.replyPokes >= 20 ? Int64.max : base << transaction.replyPokes
        return min(wait, Int64(configuration.requestResendAfterMs))
    }

    /// Asks for a late reply. Before it began: the last datagram of the (acknowledged)
    /// request again, a copy the responder ACKs and which lets it resend a reply it bounds
    /// to strangers (one datagram out per datagram in). Once it began: the ACK of the last
    /// reply datagram again, in case the ACKs were what was lost. Not in the original; its
    /// peers take either as a duplicate.
    func pokeForReply(_ transaction: Transaction, at now: Int64) {
        transaction.replyPokes += 1
        transaction.lastSend = now
        counters.replyPokes += 1
        if transaction.phase == .receivingReply {
            sendAck(for: transaction, datagram: transaction.lastReceivedNumber)
        } else if let request = transaction.outgoing, request.datagramCount > 0 {
            transmitData(request.datagramCount - 1, of: request, in: transaction, retry: false)
        }
    }

    /// A reply to an address that never acknowledged anything sends one datagram until
    /// the first ACK, so the first window cannot reflect four datagrams for one.
    func sendWindow(for transaction: Transaction) -> Int {
        transaction.isRequester || receivesAtItsAddress(transaction, at: currentTime()) ? configuration.ackWindow : 1
    }

    /// The peer of `transaction` is known to receive at the address it claims: it
    /// acknowledged this transaction, or answered one of this server's own requests lately.
    /// A member of the admission rule (a hosts.conf address) counts as such from the start,
    /// as every peer does in the original.
    func receivesAtItsAddress(_ transaction: Transaction, at now: Int64) -> Bool {
        transaction.peerAcknowledged || admission?.isMember(transaction.key.peer.ip) == true
            || acknowledgingPeers.contains(transaction.key.peer, at: now)
    }

    /// Where a transaction's timeout counts from: its last progress, so that a peer repeating
    /// itself cannot keep a slot forever. A reply to a member counts from its last word too,
    /// as the original's counts from `m_lastReadTime` (UdpServer.cpp `readTimeoutPoll`): an
    /// original requester whose reply is lost re-sends its whole request every 30 s, and
    /// each copy must find the reply still going out, not a forgotten request to serve again.
    func timeoutStart(of transaction: Transaction) -> Int64 {
        guard transaction.phase == .sendingReply, admission?.isMember(transaction.key.peer.ip) == true else {
            return transaction.lastProgress
        }
        return max(transaction.lastProgress, transaction.lastHeard)
    }

    /// The original's `readTimeoutPoll` "resend it ALL": every datagram of the request
    /// was acknowledged, yet nothing came back for `requestResendAfterMs`. The peer may
    /// have restarted and forgotten it; sent whole again, it is served anew.
    func resendWholeRequest(_ transaction: Transaction, at now: Int64) {
        guard let request = transaction.outgoing else { return }
        counters.requestsResent += 1
        transaction.outgoing = OutgoingMessage(
            bytes: request.bytes, hadError: request.hadError, geometry: transaction.geometry)
        transaction.phase = .sendingRequest
        transaction.wasResentWhole = true
        transaction.lastHeard = now
        resetResendTime(transaction)
        queueForSend(transaction)
    }
}
