/// The read side: drain the socket, route each datagram to its transaction, ACK data.
extension UdpServer {
    /// The socket's read callback (the original's `readPoll`): reads until the
    /// socket is empty or `maxDatagramsPerRead` were read, so a flood cannot hold
    /// the loop, then sends what became sendable and runs finished callbacks.
    func readPoll() {
        guard let socket else { return }
        for _ in 0..<configuration.maxDatagramsPerRead {
            let outcome = socket.receive(into: receiveBuffer)
            guard case .datagram(let length, let peer) = outcome else {
                if case .failed = outcome { counters.receiveErrors += 1 }
                break
            }
            counters.datagramsIn += 1
            counters.bytesIn += length
            guard length <= receiveBuffer.count else {
                counters.corrupt += 1  // truncated by the buffer: far too long anyway
                continue
            }
            process(UnsafeRawBufferPointer(rebasing: receiveBuffer[0..<length]), from: peer)
        }
        sendPoll()
        makeCallbacks()
        checkDrained()
    }

    func process(_ datagram: UnsafeRawBufferPointer, from peer: PeerAddress) {
        let header: DatagramHeader
        do {
            header = try DatagramHeader.decode(datagram, geometry: geometry)
        } catch {
            counters.corrupt += 1
            return
        }
        let key = TransactionKey(receivedHeader: header, from: peer)
        if header.isAck {
            receiveAck(header, for: key)
        } else {
            let payload = UnsafeRawBufferPointer(rebasing: datagram[DatagramHeader.dataHeaderSize...])
            receiveData(header, payload: payload, for: key)
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
        if header.isCancel {
            // The peer has no such transaction: stop talking to it.
            if transaction.isRequester {
                finish(transaction, .failure(.rejectedByPeer))
            } else if transaction.phase == .sendingReply {
                remove(transaction)
            } else {
                counters.strayAcks += 1  // we have sent nothing it could refuse
            }
            return
        }
        guard transaction.isSending, let message = transaction.outgoing,
              Int(header.datagramNumber) < message.datagramCount else {
            counters.strayAcks += 1
            return
        }
        let outcome = message.markAcked(Int(header.datagramNumber))
        guard outcome != .bogus else {
            counters.strayAcks += 1
            return
        }
        // Only news is progress: a peer repeating itself must not keep a slot alive forever.
        if outcome == .new { transaction.lastProgress = currentTime() }
        // Any ACK shows the peer is alive: the backoff starts over, as in the original.
        resetResendTime(transaction)
        if message.isFullyAcked {
            if transaction.isRequester {
                transaction.phase = .awaitingReply
            } else {
                remove(transaction)  // the reply is delivered: done
                return
            }
        }
        queueForSend(transaction)
    }

    // MARK: Data

    private func receiveData(_ header: DatagramHeader, payload: UnsafeRawBufferPointer, for key: TransactionKey) {
        let number = Int(header.datagramNumber)
        if let transaction = slots[key] {
            if transaction.isRequester {
                guard header.messageType == transaction.type else {
                    counters.corrupt += 1
                    return
                }
                if transaction.phase != .receivingReply {
                    // The peer replies only once it has the whole request, so the reply
                    // acknowledges every request datagram whose ACK we may have missed.
                    transaction.outgoing?.markAllAcked()
                    transaction.phase = .receivingReply
                }
            } else if transaction.phase != .receivingRequest {
                // A resent request datagram: our ACK was lost.
                counters.duplicates += 1
                sendAck(for: transaction, datagram: number)
                return
            }
            accept(header, payload: payload, into: transaction)
            return
        }
        guard header.isFromInitiator else {
            // A reply for a transaction we no longer have (it ended, timed out or was
            // cancelled): a cancel ACK tells the peer to stop resending.
            counters.strayReplies += 1
            _ = transmitAck(Transaction.ackHeader(for: key, datagram: header.datagramNumber, cancel: true),
                            to: key.peer)
            return
        }
        if finishedTransactions.contains(key) {
            counters.duplicates += 1  // a late copy of a request already answered
            return
        }
        if isShuttingDown {
            counters.shutdownDrops += 1
            return
        }
        // Incoming requests may not take the slots kept for this server's own requests.
        guard slots.count < configuration.maxSlots - reservedOutgoingSlots else {
            counters.noSlotDrops += 1  // the requester resends
            return
        }
        guard hasRoom(for: header) else {
            counters.memoryDrops += 1
            return
        }
        let niceness = header.isNice ? 1 : 0
        let policy = ResendPolicy(niceness: niceness, backoffMs: nil, maxWaitMs: nil,
                                  peerIsLocal: key.peer.isLocal(to: boundAddress?.ip ?? 0))
        let transaction = Transaction(key: key, type: header.messageType, niceness: niceness,
                                      timeoutMs: Int64(configuration.incomingTimeoutMs), serial: makeSerial(),
                                      phase: .receivingRequest, now: currentTime(), resendPolicy: policy)
        insert(transaction)
        accept(header, payload: payload, into: transaction)
    }

    private func hasRoom(for header: DatagramHeader) -> Bool {
        bufferedIncomingBytes + (header.messageSize ?? 0) <= configuration.maxBufferedIncomingBytes
    }

    /// Stores a data datagram in its transaction's message and ACKs it.
    private func accept(_ header: DatagramHeader, payload: UnsafeRawBufferPointer, into transaction: Transaction) {
        let message: IncomingMessage
        if let existing = transaction.incoming {
            guard existing.matches(header) else {
                counters.corrupt += 1  // disagrees with the first datagram about the message
                return
            }
            message = existing
        } else {
            // The buffer is allocated once the (validated) size is known, within the memory cap.
            // Replies to our own requests are exempt: their number is bounded by our requests,
            // and strangers filling the cap must not make every outgoing RPC time out.
            guard transaction.isRequester || hasRoom(for: header), let size = header.messageSize else {
                counters.memoryDrops += 1
                return
            }
            message = IncomingMessage(size: size, type: header.messageType, hadError: header.hadError,
                                      geometry: geometry)
            transaction.incoming = message
            transaction.reservedBytes = size
            bufferedIncomingBytes += size
        }
        let number = Int(header.datagramNumber)
        let isNew = message.accept(number: number, payload: payload, geometry: geometry)
        if isNew { transaction.lastProgress = currentTime() } else { counters.duplicates += 1 }
        sendAck(for: transaction, datagram: number)
        if isNew && message.isComplete { complete(transaction, message) }
    }

    private func complete(_ transaction: Transaction, _ message: IncomingMessage) {
        if transaction.isRequester {
            let bytes = message.takeBytes()
            let result: RpcResult = message.hadError ? .failure(.remote(errno: Self.errno(from: bytes))) : .success(bytes)
            finish(transaction, result)
        } else {
            transaction.phase = .awaitingHandler
            callbackQueues[transaction.niceness].append(.request(transaction))
        }
    }

    static func errno(from bytes: [UInt8]) -> Int32 {
        guard bytes.count >= 4 else { return RemoteErrno.malformed }
        return Int32(bitPattern: UInt32(bytes[0]) << 24 | UInt32(bytes[1]) << 16 | UInt32(bytes[2]) << 8 | UInt32(bytes[3]))
    }

    /// ACKs a data datagram now; if the socket would block, the ACK waits in the transaction.
    func sendAck(for transaction: Transaction, datagram number: Int) {
        let header = transaction.ackHeader(forDatagram: UInt32(number))
        if transmitAck(header, to: transaction.key.peer) == .wouldBlock {
            transaction.pendingAcks.insert(UInt32(number))
            queueForSend(transaction)
        }
    }
}
