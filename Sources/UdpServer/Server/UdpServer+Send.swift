/// The write side: send queued datagrams within each transaction's window, wait
/// for writability when the socket would block, and pass everything through the filter.
extension UdpServer {
    enum SendResult: Equatable {
        case sent
        case wouldBlock
    }

    func queueForSend(_ transaction: Transaction) {
        guard !transaction.isQueuedForSend else { return }
        transaction.isQueuedForSend = true
        sendQueues[transaction.niceness].append(transaction)
    }

    /// The original's `sendPoll`: sends from the queued transactions, niceness 0
    /// first. When the socket would block, a write callback is registered to
    /// continue; once everything is sent it is unregistered.
    func sendPoll() {
        guard !isSending, socket != nil else { return }
        isSending = true
        defer { isSending = false }
        var blocked = false
        levels: for level in sendQueues.indices {
            while let transaction = sendQueues[level].first {
                if pump(transaction) == .wouldBlock {
                    blocked = true
                    break levels
                }
                _ = sendQueues[level].popFirst()
                transaction.isQueuedForSend = false
            }
        }
        setWriteCallback(needed: blocked)
    }

    /// Sends what one transaction may send now: ACKs that were held up, then data
    /// datagrams while its window allows.
    private func pump(_ transaction: Transaction) -> SendResult {
        guard transaction.phase != .finished else { return .sent }
        while let number = transaction.pendingAcks.first {
            if transmitAck(number, of: transaction) == .wouldBlock { return .wouldBlock }
            transaction.pendingAcks.remove(number)
        }
        guard transaction.isSending, let message = transaction.outgoing else { return .sent }
        let window = sendWindow(for: transaction)
        while let number = message.nextDatagram(window: window) {
            if transmitData(number, of: message, in: transaction) == .wouldBlock { return .wouldBlock }
            message.markSent(number)
            transaction.lastSend = currentTime()
        }
        return .sent
    }

    private func setWriteCallback(needed: Bool) {
        if needed, writeRegistration == nil, let socket {
            do {
                writeRegistration = try loop.registerWrite(fd: socket.fd, niceness: 0) { [weak self] _ in
                    self?.writePoll()
                }
                counters.writeCallbacksRegistered += 1
            } catch {
                // No write callback: the next timer scan sends instead.
            }
        } else if !needed, let registration = writeRegistration {
            writeRegistration = nil
            try? loop.unregister(registration)
        }
    }

    /// The write callback: the socket has room again.
    private func writePoll() {
        sendPoll()
        makeCallbacks()
        checkDrained()
    }

    // MARK: Datagrams

    func transmitData(_ number: Int, of message: OutgoingMessage, in transaction: Transaction) -> SendResult {
        let header = transaction.header(forDatagram: number, of: message)
        let range = geometry.payloadRange(ofDatagram: number, messageSize: message.bytes.count)
        header.write(to: sendBuffer)
        message.bytes.withUnsafeBytes { source in
            UnsafeMutableRawBufferPointer(rebasing: sendBuffer[DatagramHeader.dataHeaderSize...])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: source[range]))
        }
        let result = transmit(count: DatagramHeader.dataHeaderSize + range.count, header: header, to: transaction.key.peer)
        if result == .sent { transaction.bytesSent += DatagramHeader.dataHeaderSize + range.count }
        return result
    }

    /// ACKs datagram `number` of `transaction`, counting it in what the transaction sent.
    func transmitAck(_ number: UInt32, of transaction: Transaction) -> SendResult {
        let result = transmitAck(transaction.ackHeader(forDatagram: number), to: transaction.key.peer)
        if result == .sent { transaction.bytesSent += DatagramHeader.ackSize }
        return result
    }

    func transmitAck(_ header: DatagramHeader, to peer: PeerAddress) -> SendResult {
        header.write(to: sendBuffer)
        return transmit(count: DatagramHeader.ackSize, header: header, to: peer)
    }

    /// Sends the first `count` bytes of `sendBuffer`, as the filter decides.
    private func transmit(count: Int, header: DatagramHeader, to peer: PeerAddress) -> SendResult {
        let bytes = UnsafeRawBufferPointer(rebasing: sendBuffer[0..<count])
        let fate = configuration.datagramFilter?.fate(of: OutgoingDatagram(header: header, size: count, destination: peer))
            ?? .deliver
        let result: SendResult
        switch fate {
        case .deliver:
            result = send(bytes, header: header, to: peer)
        case .drop:
            countSent(header, bytes: count)  // it left us; the "network" lost it
            return .sent
        case .duplicate:
            result = send(bytes, header: header, to: peer)
            if result == .sent { _ = send(bytes, header: header, to: peer) }
        case .delay:
            heldDatagrams.append((Array(bytes), peer, header))
            resumeTimePoll()
            return .sent
        case .wouldBlock:
            counters.sendsBlocked += 1
            return .wouldBlock
        }
        if result == .sent { flushHeldDatagrams() }
        return result
    }

    /// Sends the datagrams a filter delayed (after the one just sent: a reordering).
    func flushHeldDatagrams() {
        guard !heldDatagrams.isEmpty else { return }
        let held = heldDatagrams
        heldDatagrams.removeAll()
        for datagram in held {
            // One that would block now is lost, as on a real network.
            _ = datagram.bytes.withUnsafeBytes { send($0, header: datagram.header, to: datagram.destination) }
        }
    }

    private func send(_ bytes: UnsafeRawBufferPointer, header: DatagramHeader, to peer: PeerAddress) -> SendResult {
        guard let socket else { return .sent }
        switch socket.send(bytes, to: peer) {
        case .sent:
            countSent(header, bytes: bytes.count)
            return .sent
        case .wouldBlock:
            counters.sendsBlocked += 1
            return .wouldBlock
        case .failed:
            // As the original: treated as lost on the wire; resends cover it.
            counters.sendErrors += 1
            return .sent
        }
    }

    private func countSent(_ header: DatagramHeader, bytes: Int) {
        counters.datagramsOut += 1
        counters.bytesOut += bytes
        if header.isAck {
            counters.acksOut += 1
            if header.isCancel { counters.cancelAcksOut += 1 }
        }
    }
}
