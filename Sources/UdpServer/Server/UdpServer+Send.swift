@_spi(LoopInternals) import LoopCore
import Sockets

/// The write side: datagrams are assembled into a batch that leaves in one
/// `sendmmsg` when the server's loop callback (or public call) is done; what the
/// socket will not take goes back to its transaction, and the server waits for
/// writability. Every datagram passes through the filter on its way out.
extension UdpServer {
    func queueForSend(_ transaction: Transaction) {
        guard !transaction.isQueuedForSend else { return }
        transaction.isQueuedForSend = true
        sendQueues[transaction.niceness].append(transaction)
    }

    /// The original's `sendPoll`: sends from the queued transactions, niceness 0
    /// first, until they have nothing more or the socket is full (then the write
    /// callback carries on).
    func sendPoll() {
        guard !isSending, socket != nil else { return }
        isSending = true
        defer { isSending = false }
        sendingTogether {
            for level in sendQueues.indices {
                while !socketIsFull, let transaction = sendQueues[level].popFirst() {
                    transaction.isQueuedForSend = false
                    pump(transaction)
                    // The socket filled while it sent: it may have more, and nothing it
                    // committed need have come back to queue it (a refused duplicate copy).
                    if socketIsFull && transaction.phase != .finished { queueForSend(transaction) }
                }
            }
        }
    }

    /// Sends what one transaction may send now: ACKs that were held up, then data
    /// datagrams while its window allows.
    private func pump(_ transaction: Transaction) {
        guard transaction.phase != .finished else { return }
        while !socketIsFull, let number = transaction.pendingAcks.first {
            transaction.pendingAcks.remove(number)
            transmitAck(number, of: transaction)
        }
        guard transaction.isSending, let message = transaction.outgoing else { return }
        let window = sendWindow(for: transaction)
        while !socketIsFull, let number = message.nextDatagram(window: window) {
            message.markSent(number)
            transaction.lastSend = currentTime()
            transmitData(number, of: message, in: transaction)
        }
    }

    // MARK: Batches

    /// Runs one of the server's loop callbacks. What it sends leaves when it returns,
    /// even when it runs nested (from a callback's quickpoll): its ACKs must not wait
    /// for the callback it interrupted.
    func asLoopCallback(_ body: () -> Void) {
        sendScopeDepth += 1
        body()
        sendScopeDepth -= 1
        flushSends()
    }

    /// Runs something that may send. Inside a loop callback of this server its
    /// datagrams join that callback's batch; outside, they leave before this returns.
    func sendingTogether(_ body: () -> Void) {
        sendScopeDepth += 1
        body()
        sendScopeDepth -= 1
        if sendScopeDepth == 0 { flushSends() }
    }

    /// After a callback that ran a millisecond or more, what earlier ones sent leaves
    /// now: a datagram waits behind at most one long callback.
    func flushIfHeldLong() {
        if !sendBatch.isEmpty, currentTime() - sendBatch.firstCommitMs >= 1 { flushSends() }
    }

    /// Sends the batch. A datagram the socket (or the filter) would not take, and every
    /// one after it, goes back to its transaction (`SendBatch.IfBlocked`); the socket
    /// counts as full, and the write callback waits for room.
    func flushSends() {
        if !sendBatch.isEmpty {
            if let socket {
                send(sendBatch, through: socket)
            }
            sendBatch.removeAll()
        }
        setWriteCallback(needed: socketIsFull && socket != nil)
    }

    /// What became of each datagram of a flush.
    private enum Outcome {
        case unsent
        /// Handed to the kernel (or dropped by the filter: the "network" lost it).
        case sent
        /// The kernel refused it with an error other than `EAGAIN`: lost on the wire,
        /// as the original treats it (resends cover it).
        case failed
        /// A filter holds it back, to send after a later one.
        case held
    }

    private func send(_ batch: SendBatch, through socket: DatagramSocket) {
        var outcomes = [Outcome](repeating: .unsent, count: batch.entries.count)
        let filter = configuration.datagramFilter
        // The vector: what the filter lets through, in order.
        var count = 0
        // With a filter: how many held datagrams each position of the vector goes out
        // after. They leave once it has left, and not when the socket refused it.
        var heldBefore: [Int] = []
        // `index` is the entry's; a second copy of it gets `~index`.
        func add(_ entry: SendBatch.Entry, index: Int) {
            let base = batch.bytes(of: entry).baseAddress
            batch.bases[count] = base
            batch.lengths[count] = UInt32(entry.length)
            batch.destinations[count] = entry.destination.socketAddress
            batch.entryIndices[count] = index
            count += 1
            if filter != nil { heldBefore.append(heldDatagrams.count) }
        }
        filtering: for (index, entry) in batch.entries.enumerated() {
            guard !socketIsFull else { break }
            var datagram = OutgoingDatagram(header: entry.header, size: entry.length, destination: entry.destination)
            let fate = filter?.fate(of: datagram) ?? .deliver
            switch fate {
            case .deliver:
                add(entry, index: index)
            case .duplicate:
                add(entry, index: index)
                datagram.isSecondCopy = true
                if filter?.fate(of: datagram) == .wouldBlock {
                    noteSocketFull()
                    break filtering
                }
                add(entry, index: ~index)
            case .drop:
                outcomes[index] = .sent
                countSent(entry.header, bytes: entry.length)
            case .delay:
                outcomes[index] = .held
                heldDatagrams.append((Array(batch.bytes(of: entry)), entry.destination, entry.header))
                resumeTimePoll()
            case .wouldBlock:
                noteSocketFull()
                break filtering
            }
        }

        var position = 0
        var lastSent = -1
        while position < count {
            let outcome = socket.send(batch, position..<count)
            counters.sendSystemCalls += 1
            switch outcome {
            case .done(let n):
                for p in position..<position + n {
                    let index = batch.entryIndices[p]
                    countSent(batch.entries[index >= 0 ? index : ~index].header, bytes: Int(batch.lengths[p]))
                    if index >= 0 { outcomes[index] = .sent }
                }
                position += n
                lastSent = position - 1
            case .wouldBlock:
                noteSocketFull()
                position = count
            case .failed:
                counters.sendErrors += 1
                if batch.entryIndices[position] >= 0 { outcomes[batch.entryIndices[position]] = .failed }
                position += 1
            }
        }

        for (index, entry) in batch.entries.enumerated() {
            if outcomes[index] == .unsent {
                giveBack(entry)
            } else {
                entry.transaction?.bytesSent += entry.length
            }
        }
        if lastSent >= 0, filter != nil, heldBefore[lastSent] > 0 { sendHeldDatagrams(heldBefore[lastSent]) }
    }

    private func noteSocketFull() {
        counters.sendsBlocked += 1
        socketIsFull = true
    }

    /// A datagram the socket would not take goes back where it came from.
    private func giveBack(_ entry: SendBatch.Entry) {
        switch entry.ifBlocked {
        case .letGo:
            break
        case .ackLater(let number):
            guard let transaction = entry.transaction, transaction.phase != .finished else { return }
            transaction.pendingAcks.insert(number)
            queueForSend(transaction)
        case .sendLater(let message, let number):
            guard let transaction = entry.transaction, transaction.phase != .finished,
                transaction.outgoing === message
            else { return }
            message.markUnsent(number)
            queueForSend(transaction)
        }
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
        asLoopCallback {
            socketIsFull = false
            sendPoll()
            makeCallbacks()
            checkDrained()
        }
    }

    // MARK: Datagrams

    /// Assembles data datagram `number` of `message` into the batch. If the socket will
    /// not take it, it is sent again later unless `retry` is false (a reply poke).
    func transmitData(_ number: Int, of message: OutgoingMessage, in transaction: Transaction, retry: Bool = true) {
        let header = transaction.header(forDatagram: number, of: message)
        let range = transaction.geometry.payloadRange(ofDatagram: number, messageSize: message.bytes.count)
        let slot = sendBatch.slot
        header.write(to: slot)
        message.bytes.withUnsafeBytes { source in
            UnsafeMutableRawBufferPointer(rebasing: slot[DatagramHeader.dataHeaderSize...])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: source[range]))
        }
        commit(
            length: DatagramHeader.dataHeaderSize + range.count, header: header, to: transaction.key.peer,
            transaction: transaction, ifBlocked: retry ? .sendLater(message, number) : .letGo)
    }

    /// ACKs datagram `number` of `transaction`; if the socket will not take it, the
    /// transaction sends it later.
    func transmitAck(_ number: UInt32, of transaction: Transaction) {
        let header = transaction.ackHeader(forDatagram: number)
        header.write(to: sendBatch.slot)
        commit(
            length: DatagramHeader.ackSize, header: header, to: transaction.key.peer,
            transaction: transaction, ifBlocked: .ackLater(number))
    }

    /// An ACK outside any transaction (a cancel, a late duplicate's): lost if the socket is full.
    func transmitAck(_ header: DatagramHeader, to peer: PeerAddress) {
        header.write(to: sendBatch.slot)
        commit(length: DatagramHeader.ackSize, header: header, to: peer, transaction: nil, ifBlocked: .letGo)
    }

    private func commit(
        length: Int, header: DatagramHeader, to peer: PeerAddress, transaction: Transaction?,
        ifBlocked: SendBatch.IfBlocked
    ) {
        sendBatch.commit(
            length: length, header: header, to: peer, transaction: transaction, ifBlocked: ifBlocked,
            now: currentTime())
        // Never full after a commit: the next datagram always has its slot.
        if sendBatch.isFull || sendScopeDepth == 0 { flushSends() }
    }

    /// Sends the datagrams a filter delayed (after the one just sent: a reordering);
    /// the first `limit` of them, or all.
    func sendHeldDatagrams(_ limit: Int? = nil) {
        guard !heldDatagrams.isEmpty, let socket else { return }
        let count = min(limit ?? heldDatagrams.count, heldDatagrams.count)
        let held = heldDatagrams.prefix(count)
        heldDatagrams.removeFirst(count)
        for datagram in held {
            // One that would block now is lost, as on a real network.
            let outcome = datagram.bytes.withUnsafeBytes { socket.send($0, to: datagram.destination) }
            counters.sendSystemCalls += 1
            switch outcome {
            case .done: countSent(datagram.header, bytes: datagram.bytes.count)
            case .wouldBlock: counters.sendsBlocked += 1
            case .failed: counters.sendErrors += 1
            }
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
