import Compat
import Glibc
import Sockets

/// One outgoing exchange as asked for: what `send` was given, and its deadline on the loop's clock.
struct ExchangeRequest {
    let request: [UInt8]
    let peer: PeerAddress
    let framing: any TcpFraming
    let timeoutMs: Int
    let deadline: Int64?
    let niceness: Int
    /// When it was asked for: a waiting exchange's silence counts from here.
    var askedAt: Int64
}

extension TcpServer {
    /// Sends `request` to `peer` and calls `completion` exactly once, from a later
    /// callback: with the reply as `framing` frames it, or with why there is none
    /// (refused, reset, timed out, past its deadline, the server closed). Throws — and
    /// then never calls `completion` — when the exchange cannot start at all (a refused
    /// loopback connect usually fails here). A keep-alive connection left by an earlier
    /// exchange to the same peer is reused; if it turns out closed before any reply byte,
    /// the exchange is tried once on a new connection.
    ///
    /// `timeoutMs` bounds silence (no byte moving either way); `deadlineMs`, when given,
    /// bounds the whole exchange from now, however steadily a server trickles its reply.
    /// On a backend that cannot watch every descriptor number (select's 1024), an
    /// exchange whose socket would be numbered past the limit waits for a lower number
    /// to be free, within its timeout and deadline, instead of failing.
    public func send(
        _ request: [UInt8], to peer: PeerAddress, framing: any TcpFraming, timeoutMs: Int = 60_000,
        deadlineMs: Int? = nil, niceness: Int = 0,
        completion: @escaping (Result<[UInt8], TcpError>) -> Void
    ) throws(TcpError) {
        guard !isClosed else { throw .shuttingDown }
        guard (0...2).contains(niceness) else { throw .refusedByLoop(.invalidNiceness(niceness)) }
        guard timeoutMs >= 1 else { throw .refusedByLoop(.invalidPeriod(timeoutMs)) }
        if let deadlineMs, deadlineMs < 1 { throw .refusedByLoop(.invalidPeriod(deadlineMs)) }
        // The deadline counts from the clock read now, rounded up, not from `loop.now` (the
        // time of this poll, stale by whatever ran since): it never passes before its time.
        let asked = ExchangeRequest(
            request: request, peer: peer, framing: framing, timeoutMs: timeoutMs,
            deadline: deadlineMs.map { loop.configuration.clock.millisecondsRoundedUp() + Int64($0) },
            niceness: niceness, askedAt: loop.now)
        // Behind exchanges already waiting for a descriptor: first come, first connected.
        if !descriptorWaits.queue.isEmpty && !pool.keys.contains(peer) {
            do { try startScanning() } catch { throw .refusedByLoop(error) }
            try waitForDescriptor(asked, completion, atFront: false)
            return
        }
        _ = try start(asked, completion, atFront: false)
    }

    /// Starts an exchange: over a pooled connection, a new one, or (its descriptor past
    /// the loop's limit) in the queue of those waiting for one. False when it waits.
    func start(
        _ asked: ExchangeRequest, _ completion: @escaping (Result<[UInt8], TcpError>) -> Void,
        atFront: Bool
    ) throws(TcpError) -> Bool {
        do { try startScanning() } catch { throw .refusedByLoop(error) }
        if let connection = takePooled(asked.peer) {
            stats.connectionsReused += 1
            connection.niceness = asked.niceness
            connection.exchange = exchange(asked, overPooledConnection: true, completion)
            connection.state = .writing
            connection.pending = asked.request
            connection.pendingOffset = 0
            connection.lastAction = loop.now
            connection.exchangeBytesIn = 0
            // Written from the write callback, not here: the completion never runs inside `send`.
            do { try watchWrites(connection) { [unowned self] in self.writePending($0) } } catch {
                connection.exchange = nil
                destroy(connection)
                throw .refusedByLoop(error)
            }
            return true
        }
        let fd: Int32
        do {
            switch try StreamSocket.connect(to: asked.peer) {
            case .connected(let connected): fd = connected
            case .inProgress(let connecting): fd = connecting
            }
        } catch {
            stats.connectsFailed += 1
            throw .connectFailed(errno: error.errno)
        }
        if let limit = loop.backend.descriptorLimit, fd >= limit {
            // Lower numbers are all taken now; one will be free when a connection closes.
            // The socket never reached the loop: closed here, at once.
            closeDescriptor(fd)
            try waitForDescriptor(asked, completion, atFront: atFront)
            return false
        }
        stats.connectsStarted += 1
        let connection = makeConnection(
            fd: fd, peer: asked.peer, isIncoming: false, niceness: asked.niceness,
            state: .connecting)
        connection.exchange = exchange(asked, overPooledConnection: false, completion)
        // Writable once connected, whether the connect finished at once or is in progress.
        do { try watchWrites(connection) { [unowned self] in self.connectReady($0) } } catch {
            connection.exchange = nil
            destroy(connection)
            throw .refusedByLoop(error)
        }
        return true
    }

    private func exchange(
        _ asked: ExchangeRequest, overPooledConnection: Bool,
        _ completion: @escaping (Result<[UInt8], TcpError>) -> Void
    ) -> OutgoingExchange {
        let exchange = OutgoingExchange(
            request: asked.request, framing: asked.framing, timeoutMs: Int64(asked.timeoutMs),
            startedAt: loop.now, overPooledConnection: overPooledConnection,
            completion: completion)
        exchange.deadline = asked.deadline
        return exchange
    }

    private func watchWrites(_ connection: TcpConnection, _ ready: @escaping (TcpConnection) -> Void) throws(LoopError)
    {
        connection.writeRegistration = try loop.registerWrite(fd: connection.fd, niceness: connection.niceness) {
            [connection] _ in ready(connection)
        }
    }

    private func connectReady(_ connection: TcpConnection) {
        guard connection.isOpen, connection.state == .connecting, let exchange = connection.exchange else { return }
        if let r = connection.writeRegistration { try? loop.unregister(r) }
        connection.writeRegistration = nil
        let error = StreamSocket.pendingError(connection.fd)
        if error != 0 {
            stats.connectsFailed += 1
            destroy(connection, error: .connectFailed(errno: error))
            return
        }
        connection.lastAction = loop.now
        startWriting(connection, exchange.request)
    }

    /// The reply is whole: the connection goes to the pool if it may carry another exchange.
    func completeExchange(_ connection: TcpConnection, reply: [UInt8]) {
        guard let exchange = connection.exchange else { return }
        connection.exchange = nil
        stats.exchangesCompleted += 1
        let reusable =
            !connection.closeAfterWrite && !connection.peerClosed && connection.received.isEmpty && !isClosed
            && (pool[connection.peer]?.count ?? 0) < configuration.maxIdleOutgoingPerPeer
        if reusable {
            connection.state = .pooled
            connection.lastAction = loop.now
            pool[connection.peer, default: []].append(connection)
            stats.outgoingIdle += 1
            do { try watchReads(connection) } catch { destroy(connection) }
            // A waiting exchange to the same peer can have it, or another one its descriptor.
            if !descriptorWaits.queue.isEmpty { descriptorWaits.retryNow = true }
        } else {
            destroy(connection)
        }
        exchange.finish(.success(reply))
    }

    /// Ends an exchange whose connection was destroyed: over a pooled connection that
    /// had not yet answered, once more on a fresh one; otherwise with `error`.
    func failExchange(_ exchange: OutgoingExchange, _ error: TcpError, on connection: TcpConnection) {
        let retryable: Bool =
            switch error {
            case .closedByPeer, .transferFailed: true
            default: false
            }
        if exchange.overPooledConnection && retryable && connection.exchangeBytesIn == 0 && !isClosed,
            let completion = exchange.takeCompletion()
        {
            let asked = ExchangeRequest(
                request: exchange.request, peer: connection.peer, framing: exchange.framing,
                timeoutMs: Int(exchange.timeoutMs), deadline: exchange.deadline,
                niceness: connection.niceness, askedAt: loop.now)
            do { _ = try start(asked, completion, atFront: true) } catch {
                stats.exchangesFailed += 1
                completion(.failure(error))
            }
            return
        }
        stats.exchangesFailed += 1
        exchange.finish(.failure(error))
    }

    func takePooled(_ peer: PeerAddress) -> TcpConnection? {
        guard var idle = pool[peer], let connection = idle.popLast() else { return nil }
        pool[peer] = idle.isEmpty ? nil : idle
        stats.outgoingIdle -= 1
        stopWatchingReads(connection)
        return connection
    }

    func removeFromPool(_ connection: TcpConnection) {
        guard var idle = pool[connection.peer] else { return }
        idle.removeAll { $0 === connection }
        pool[connection.peer] = idle.isEmpty ? nil : idle
        stats.outgoingIdle -= 1
    }
}
