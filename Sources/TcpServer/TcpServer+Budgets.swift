import Sockets

/// What one client may take of the server: requests served a turn, bytes read ahead
/// of its replies, and its share of the request bytes held across all connections.
extension TcpServer {
    // MARK: Requests served a turn

    /// Served `maxRequestsPerTurn` with more buffered: the rest waits for the next turn of
    /// the loop. Its socket may have nothing new to report, so the connection is kept in
    /// a list the loop's bottom half serves at the top of the next poll (and while the
    /// list is not empty the loop does not sleep).
    func awaitNextTurn(_ connection: TcpConnection) {
        stats.turnsYielded += 1
        guard !connection.awaitingTurn else { return }
        if turnHook == nil {
            // Refused only by a closed loop, which serves nothing more anyway.
            turnHook = try? loop.addBottomHalf(
                needed: { [unowned self] in !self.awaitingTurn.isEmpty },
                run: { [unowned self] in self.serveAwaitingTurn() })
        }
        connection.awaitingTurn = true
        awaitingTurn.append(connection)
    }

    /// The connections left over from the last turn, each served its next share; one
    /// with still more waits again, behind every socket that became ready meanwhile.
    func serveAwaitingTurn() {
        let due = awaitingTurn
        awaitingTurn = []
        for connection in due {
            connection.awaitingTurn = false
            if connection.isOpen && connection.state == .reading { serveBuffered(connection) }
        }
    }

    func stopServingTurns() {
        if let hook = turnHook { try? loop.removeBottomHalf(hook) }
        turnHook = nil
        awaitingTurn = []
    }

    // MARK: Request bytes

    /// How much an incoming connection may read now: up to `maxReadAheadBytes` buffered
    /// (a message larger than that grows by a quarter of it a read), within what is left
    /// of `requestBytesBudget`. With too little left, the least used other connection
    /// holding request bytes gives way; with none and nothing left, this one is refused.
    /// 0: read nothing (the connection may have been closed).
    func incomingReadAllowance(_ connection: TcpConnection) -> Int {
        let readAhead = max(configuration.maxReadAheadBytes, 1)
        let wanted = max(readAhead - connection.received.count, readAhead / 4, 1)
        let budget = configuration.requestBytesBudget
        // Room for a useful read, not a byte at a time.
        let lowWater = max(1, min(wanted, 4096, budget))
        while budget - stats.requestBytesHeld < lowWater, let victim = leastUsedHolder(sparing: connection) {
            refuseForBudget(victim)
        }
        let room = budget - stats.requestBytesHeld
        guard room > 0 else {
            refuseForBudget(connection)
            return 0
        }
        return min(wanted, room)
    }

    /// The least recently active incoming connection only reading (not one with its
    /// handler or writing), holding request bytes, of the address holding the most:
    /// one client hogging the budget loses its own connections first.
    private func leastUsedHolder(sparing asker: TcpConnection) -> TcpConnection? {
        var perAddress: [UInt32: (bytes: Int, oldest: TcpConnection)] = [:]
        for connection in connections.values
        where connection !== asker && connection.isIdleOrReading && !connection.received.isEmpty {
            if let entry = perAddress[connection.peer.ip] {
                let older =
                    connection.lastAction < entry.oldest.lastAction
                    || (connection.lastAction == entry.oldest.lastAction && connection.id.value < entry.oldest.id.value)
                perAddress[connection.peer.ip] = (
                    entry.bytes + connection.received.count, older ? connection : entry.oldest
                )
            } else {
                perAddress[connection.peer.ip] = (connection.received.count, connection)
            }
        }
        return perAddress.values.max { a, b in
            a.bytes != b.bytes ? a.bytes < b.bytes : a.oldest.lastAction > b.oldest.lastAction
        }?.oldest
    }

    /// Drops what the connection holds, answers with the server's refusal (HTTP: a 503)
    /// and closes it once that is written.
    private func refuseForBudget(_ connection: TcpConnection) {
        stats.budgetRefusals += 1
        stopWatchingReads(connection)
        dropReceived(connection)
        let reply = configuration.refusalReply
        if reply.isEmpty {
            destroy(connection)
        } else {
            connection.closeAfterWrite = true
            startWriting(connection, reply)
        }
    }

    // MARK: Accounting of the bytes read

    /// Every change to a connection's buffer goes through these three, so that
    /// `requestBytesHeld` is the sum over the incoming connections.
    func appendReceived(_ connection: TcpConnection, _ bytes: ArraySlice<UInt8>) {
        connection.received.append(contentsOf: bytes)
        if connection.isIncoming { stats.requestBytesHeld += bytes.count }
    }

    func consumeReceived(_ connection: TcpConnection, _ count: Int) {
        // Emptied, the buffer gives its storage back: an idle keep-alive connection
        // would otherwise keep the capacity of its largest request, out of the budget's sight.
        if count >= connection.received.count {
            connection.received = []
        } else {
            connection.received.removeFirst(count)
        }
        if connection.isIncoming { stats.requestBytesHeld -= count }
    }

    func dropReceived(_ connection: TcpConnection) {
        if connection.isIncoming { stats.requestBytesHeld -= connection.received.count }
        connection.received = []
    }
}
