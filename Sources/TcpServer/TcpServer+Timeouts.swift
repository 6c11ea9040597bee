extension TcpServer {
    /// Every `scanIntervalMs` (the original's `readTimeoutPoll`): ends sockets that
    /// went quiet, requests that take too long to arrive, replies that come in too
    /// slowly, and idle keep-alive sockets; starts accepting again after a pause.
    /// A request with its handler is never timed out here: the handler owns it.
    func scanTimeouts() {
        resumeAcceptingIfPaused()
        let now = loop.now
        for connection in Array(connections.values) where connection.isOpen {
            // The clock stepped back: count quiet time from now, not from the future.
            if connection.lastAction > now { connection.lastAction = now }
            let quiet = now - connection.lastAction
            switch connection.state {
            case .handling, .closed:
                continue
            case .pooled:
                if quiet >= Int64(configuration.idleTimeoutMs) {
                    stats.idleClosed += 1
                    destroy(connection)
                }
            case .reading where connection.isIncoming:
                if let started = connection.messageStartedAt {
                    if quiet >= Int64(configuration.timeoutMs)
                        || now - started >= Int64(configuration.requestDeadlineMs)
                    {
                        stats.timedOut += 1
                        refuseMessage(connection, reply: framing.timedOutReply)
                    }
                } else if quiet >= Int64(configuration.idleTimeoutMs) {
                    stats.idleClosed += 1
                    destroy(connection)
                }
            case .connecting, .reading, .writing:
                let limit = connection.exchange?.timeoutMs ?? Int64(configuration.timeoutMs)
                if quiet >= limit {
                    stats.timedOut += 1
                    destroy(connection, error: .timedOut)
                } else if let deadline = connection.exchange?.deadline, now >= deadline {
                    stats.timedOut += 1
                    destroy(connection, error: .deadlinePassed)
                } else if let exchange = connection.exchange, connection.state == .reading,
                    readTooSlow(exchange, connection, now)
                {
                    stats.timedOut += 1
                    destroy(connection, error: .tooSlow)
                }
            }
        }
        updateScanning()
    }

    /// The original's read-rate rule: after `minimumRateAfterMs`, a reply that has
    /// begun but averages under `minimumReadRate` bytes a second is ended.
    private func readTooSlow(_ exchange: OutgoingExchange, _ connection: TcpConnection, _ now: Int64) -> Bool {
        let elapsed = now - exchange.startedAt
        guard elapsed > Int64(configuration.minimumRateAfterMs), connection.exchangeBytesIn > 0 else { return false }
        return Int64(connection.exchangeBytesIn) * 1000 / elapsed < Int64(configuration.minimumReadRate)
    }
}
