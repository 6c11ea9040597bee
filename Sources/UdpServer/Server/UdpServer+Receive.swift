@_spi(LoopInternals) import LoopCore

/// The read side: drain the socket, route each datagram to its transaction, ACK data.
extension UdpServer {
    /// The socket's read callback (the original's `readPoll`): reads until the
    /// socket is empty or `maxDatagramsPerRead` were read, so a flood cannot hold
    /// the loop; queues the ACKs and what became sendable; then runs the finished
    /// callbacks (which sends those first), whose datagrams leave together when they are done.
    func readPoll() {
        asLoopCallback {
            receiveWaitingDatagrams()
            sendPoll()
            makeCallbacks()
            checkDrained()
        }
    }

    /// Up to `datagramsPerSystemCall` datagrams a `recvmmsg`.
    private func receiveWaitingDatagrams() {
        var remaining = configuration.maxDatagramsPerRead
        while remaining > 0, let socket {
            let asked = min(remaining, receiveBatch.capacity)
            let outcome = socket.receive(into: receiveBatch, count: asked)
            counters.receiveSystemCalls += 1
            guard case .done(let received) = outcome else {
                if case .failed = outcome { counters.receiveErrors += 1 }
                return
            }
            for i in 0..<received {
                let length = Int(receiveBatch.lengths[i])
                counters.datagramsIn += 1
                counters.bytesIn += length
                guard length <= receiveBatch.bufferSize else {
                    counters.corrupt += 1 // truncated by the buffer: far too long anyway
                    continue
                }
                process(receiveBatch.datagram(i), from: PeerAddress(receiveBatch.sources[i]))
            }
            remaining -= received
        }
    }

    func process(_ datagram: UnsafeRawBufferPointer, from peer: PeerAddress) {
        if let admission, !admission.admits(peer.ip) {
            // The original's "unauthorized udp packet": dropped unread, ACKs too, and
            // never answered (an answer would confirm the port to a scanner).
            counters.unauthorized += 1
            noteDrop(.unauthorized, from: peer.ip)
            return
        }
        let header: DatagramHeader
        do {
            header = try DatagramHeader.decode(datagram, geometry: geometry(toward: peer.ip))
        } catch .messageTooLarge {
            // A well-formed request for more than this server takes: refused at once with a
            // cancel ACK, as the original answers a message it cannot allocate (ENOMEM).
            if let refused = DatagramHeader.addressing(of: datagram), refused.isFromInitiator {
                refuse(TransactionKey(receivedHeader: refused, from: peer), datagram: refused.datagramNumber, .noMemory)
            } else {
                counters.corrupt += 1
            }
            return
        } catch {
            counters.corrupt += 1
            return
        }
        let key = TransactionKey(receivedHeader: header, from: peer)
        if header.isAck {
            receiveAck(header, for: key)
        } else {
            let payload = UnsafeRawBufferPointer(rebasing: datagram[DatagramHeader.dataHeaderSize...])
            receiveData(header, payload: payload, size: datagram.count, for: key)
        }
    }

    // MARK: ACKs

    private func receiveAck(_ header: DatagramHeader, for key: TransactionKey) {
        counters.acksIn += 1
        if header.isCancel { counters.cancelAcksIn += 1 }
        guard let transaction = slots[key] else {
            counters.strayAcks += 1
            return
        }
        transaction.lastHeard = currentTime()
        if header.isCancel {
            // The peer has no such transaction: stop talking to it.
            if transaction.isRequester {
                finish(transaction, .failure(.rejectedByPeer))
            } else if transaction.phase == .sendingReply {
                remove(transaction)
            } else {
                counters.strayAcks += 1 // we have sent nothing it could refuse
            }
            return
        }
        guard transaction.isSending, let message = transaction.outgoing,
            Int(header.datagramNumber) < message.datagramCount
        else {
            counters.strayAcks += 1
            return
        }
        let outcome = message.markAcked(Int(header.datagramNumber))
        guard outcome != .bogus else {
            counters.strayAcks += 1
            return
        }
        // Only news is progress: a peer repeating itself must not keep a slot alive forever.
        // ACKs of a request sent whole again are not news: it had them all once already.
        if outcome == .new && !transaction.wasResentWhole { transaction.lastProgress = currentTime() }
        transaction.peerAcknowledged = true
        if transaction.isRequester {
            // It answered a transaction id this server chose: it receives at the address it
            // claims. (An ACK of a reply proves nothing: the requester chose that id, and a
            // forger can ACK its own forged request.)
            acknowledgingPeers.acknowledged(by: key.peer, at: currentTime())
        }
        // Any ACK shows the peer is alive: the backoff starts over, as in the original.
        resetResendTime(transaction)
        if message.isFullyAcked {
            if transaction.isRequester {
                transaction.phase = .awaitingReply
            } else {
                remove(transaction) // the reply is delivered: done
                return
            }
        }
        queueForSend(transaction)
    }

    // MARK: Data

    private func receiveData(
        _ header: DatagramHeader, payload: UnsafeRawBufferPointer, size: Int,
        for key: TransactionKey
    ) {
        let number = Int(header.datagramNumber)
        if let transaction = slots[key] {
            transaction.lastHeard = currentTime()
            if transaction.isRequester {
                guard header.messageType == transaction.type else {
                    counters.corrupt += 1
                    return
                }
                acknowledgingPeers.acknowledged(by: key.peer, at: currentTime()) // a reply to our id
                if transaction.phase != .receivingReply {
                    // The peer replies only once it has the whole request, so the reply
                    // acknowledges every request datagram whose ACK we may have missed.
                    transaction.outgoing?.markAllAcked()
                    transaction.phase = .receivingReply
                }
            } else {
                transaction.bytesHeard += size
                if transaction.phase != .receivingRequest {
                    // A resent request datagram: our ACK was lost, or (while the reply is
                    // being sent) the requester asks for the reply again.
                    counters.duplicates += 1
                    if transaction.phase == .sendingReply { transaction.resendCredits = 1 }
                    sendAck(for: transaction, datagram: number)
                    return
                }
            }
            accept(header, payload: payload, into: transaction)
            return
        }
        guard header.isFromInitiator else {
            // A reply for a transaction we no longer have (it ended, timed out or was
            // cancelled): a cancel ACK tells the peer to stop resending.
            counters.strayReplies += 1
            transmitAck(
                Transaction.ackHeader(for: key, datagram: header.datagramNumber, cancel: true),
                to: key.peer)
            return
        }
        finishedTransactions.expire(before: currentTime() - Int64(configuration.finishedMemoryMs))
        if finishedTransactions.isCopy(key, of: header) {
            // A late copy of a request already answered: its ACK may be what was lost.
            counters.lateDuplicates += 1
            transmitAck(
                Transaction.ackHeader(for: key, datagram: header.datagramNumber, cancel: false),
                to: key.peer)
            return
        }
        if isShuttingDown {
            counters.shutdownDrops += 1
            return
        }
        if let refusal = admitIncoming(from: key.peer.ip, size: header.messageSize ?? 0) {
            refuse(key, datagram: header.datagramNumber, refusal)
            return
        }
        let niceness = header.isNice ? 1 : 0
        let policy = ResendPolicy(
            niceness: niceness, backoffMs: nil, maxWaitMs: nil,
            peerIsLocal: key.peer.isLocal(to: boundAddress?.ip ?? 0))
        let transaction = Transaction(
            key: key, type: header.messageType, niceness: niceness,
            timeoutMs: Int64(configuration.incomingTimeoutMs), serial: makeSerial(),
            phase: .receivingRequest, now: currentTime(), resendPolicy: policy,
            geometry: geometry(toward: key.peer.ip))
        transaction.bytesHeard = size
        finishedTransactions.remove(key) // if the id was reused: a new request, admitted now
        insert(transaction)
        accept(header, payload: payload, into: transaction)
    }

    // MARK: Room for new requests

    /// Makes room for a new incoming request of `size` bytes from `ip`, evicting
    /// stalled partial requests if need be: first the peer's own (its share), then
    /// anyone's (the server's totals). Returns why there is none, or nil if admitted.
    private func admitIncoming(from ip: UInt32, size: Int) -> DropLog.Reason? {
        let now = currentTime()
        let slotLimit = configuration.maxSlots - reservedOutgoingSlots
        let byteLimit = configuration.maxBufferedIncomingBytes
        guard size <= byteLimit, size <= bufferedBytesPerPeer else { return .noMemory } // never fits
        // Over its share, a peer makes room only from its own stalled requests. (When the
        // server is full as well, that is the reason given.)
        while ledger.holding(of: ip).slots >= incomingSlotsPerPeer {
            guard evictStalled(of: ip, at: now) else { return slots.count >= slotLimit ? .noSlot : .peerSlotShare }
        }
        while ledger.holding(of: ip).bytes + size > bufferedBytesPerPeer {
            guard evictStalled(of: ip, at: now) else {
                return bufferedIncomingBytes + size > byteLimit ? .noMemory : .peerByteShare
            }
        }
        while slots.count >= slotLimit {
            guard evictStalled(of: nil, at: now) else { return .noSlot }
        }
        while bufferedIncomingBytes + size > byteLimit {
            guard evictStalled(of: nil, at: now) else { return .noMemory }
        }
        return nil
    }

    /// Evicts the oldest stalled partial request of `ip` (or of anyone); its sender
    /// gets a cancel ACK, as the original tells a sender it has no memory for it.
    private func evictStalled(of ip: UInt32?, at now: Int64) -> Bool {
        guard let victim = ledger.evictionCandidate(of: ip, isStalled: { isStalled($0, at: now) }) else { return false }
        counters.evictions += 1
        noteDrop(.evicted, from: victim.key.peer.ip)
        remove(victim, remember: false)
        transmitAck(victim.ackHeader(forDatagram: 0, cancel: true), to: victim.key.peer)
        return true
    }

    /// A partial request that made no progress for `stalledAfterMs`, or whose rate so far
    /// would take it longer than `maximumTransferMs` in all.
    func isStalled(_ transaction: Transaction, at now: Int64) -> Bool {
        let age = now - transaction.startedAt
        guard age >= Int64(configuration.stalledAfterMs) else { return false }
        if now - transaction.lastProgress >= Int64(configuration.stalledAfterMs) { return true }
        guard let message = transaction.incoming, message.receivedCount > 0 else { return true }
        // Whole datagrams' worth received (the last may be shorter: close enough for a rate).
        let received = message.receivedCount * transaction.geometry.payloadSize
        return Double(age) * Double(message.size) / Double(received) > Double(configuration.maximumTransferMs)
    }

    /// Counts and logs a refused request. Refused for memory (the cap, the size limit, or
    /// a message larger than any address may hold), its sender gets a cancel ACK, the
    /// original's ENOMEM answer: waiting would not help. Refused for a slot, or because its
    /// address holds its share for now, it is dropped, and resent later by its sender.
    func refuse(_ key: TransactionKey, datagram number: UInt32, _ reason: DropLog.Reason) {
        noteDrop(reason, from: key.peer.ip)
        switch reason {
        case .peerSlotShare, .peerByteShare: counters.peerShareDrops += 1
        case .noSlot: counters.noSlotDrops += 1
        case .noMemory:
            counters.memoryDrops += 1
            transmitAck(Transaction.ackHeader(for: key, datagram: number, cancel: true), to: key.peer)
        case .evicted, .replyAbandoned, .unauthorized: break
        }
    }

    /// Stores a data datagram in its transaction's message and ACKs it.
    private func accept(_ header: DatagramHeader, payload: UnsafeRawBufferPointer, into transaction: Transaction) {
        let message: IncomingMessage
        if let existing = transaction.incoming {
            guard existing.matches(header) else {
                counters.corrupt += 1 // disagrees with the first datagram about the message
                return
            }
            message = existing
        } else {
            // The buffer is allocated once the (validated) size is known; a request was
            // admitted within the caps. Replies to our own requests are exempt: their number
            // is bounded by our requests, and strangers filling the cap must not make every
            // outgoing RPC time out.
            guard let size = header.messageSize else { return }
            message = IncomingMessage(
                size: size, type: header.messageType, hadError: header.hadError,
                geometry: transaction.geometry)
            transaction.incoming = message
            transaction.receivedSize = size
            transaction.reservedBytes = size
            bufferedIncomingBytes += size
            if !transaction.isRequester { ledger.reserved(size, for: transaction.key.peer.ip) }
        }
        let number = Int(header.datagramNumber)
        transaction.lastReceivedNumber = number
        let isNew = message.accept(number: number, payload: payload, geometry: transaction.geometry)
        if isNew { transaction.lastProgress = currentTime() } else { counters.duplicates += 1 }
        sendAck(for: transaction, datagram: number)
        if isNew && message.isComplete { complete(transaction, message) }
    }

    private func complete(_ transaction: Transaction, _ message: IncomingMessage) {
        if transaction.isRequester {
            let bytes = message.takeBytes()
            let result: RpcResult =
                message.hadError ? .failure(.remote(errno: Self.errno(from: bytes))) : .success(bytes)
            finish(transaction, result)
        } else {
            transaction.phase = .awaitingHandler
            callbackQueues[transaction.niceness].append(.request(transaction))
        }
    }

    static func errno(from bytes: [UInt8]) -> Int32 {
        guard bytes.count >= 4 else { return RemoteErrno.malformed }
        return Int32(
            bitPattern: UInt32(bytes[0]) << 24 | UInt32(bytes[1]) << 16 | UInt32(bytes[2]) << 8 | UInt32(bytes[3]))
    }

    /// ACKs a data datagram (it leaves with the batch; if the socket is full, the ACK
    /// waits in the transaction).
    func sendAck(for transaction: Transaction, datagram number: Int) {
        transmitAck(UInt32(number), of: transaction)
    }
}
