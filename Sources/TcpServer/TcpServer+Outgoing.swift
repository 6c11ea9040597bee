import Compat
import Glibc
import Sockets

extension TcpServer {
    /// Sends `request` to `peer` and calls `completion` exactly once, from a later
    /// callback: with the reply as `framing` frames it, or with why there is none
    /// (refused, reset, timed out, the server closed). Throws — and then never calls
    /// `completion` — when the exchange cannot start at all (a refused loopback connect
    /// usually fails here). A keep-alive connection left by an earlier exchange to the
    /// same peer is reused; if it turns out closed before any reply byte, the exchange
    /// is tried once on a new connection.
    public func send(_ request: [UInt8], to peer: PeerAddress, framing: any TcpFraming, timeoutMs: Int = 60_000,
                     niceness: Int = 0, completion: @escaping (Result<[UInt8], TcpError>) -> Void) throws(TcpError) {
        guard !isClosed else { throw .shuttingDown }
        guard (0...2).contains(niceness) else { throw .refusedByLoop(.invalidNiceness(niceness)) }
        guard timeoutMs >= 1 else { throw .refusedByLoop(.invalidPeriod(timeoutMs)) }
        do { try startScanning() } catch { throw .refusedByLoop(error) }
        if let connection = takePooled(peer) {
            stats.connectionsReused += 1
            connection.niceness = niceness
            connection.exchange = OutgoingExchange(request: request, framing: framing, timeoutMs: Int64(timeoutMs),
                                                   startedAt: loop.now, overPooledConnection: true, completion: completion)
            connection.state = .writing
            connection.pending = request
            connection.pendingOffset = 0
            connection.lastAction = loop.now
            connection.exchangeBytesIn = 0
            // Written from the write callback, not here: the completion never runs inside `send`.
            do { try watchWrites(connection) { [unowned self] in self.writePending($0) } } catch {
                connection.exchange = nil
                destroy(connection)
                throw .refusedByLoop(error)
            }
            return
        }
        let fd: Int32
        do {
            switch try StreamSocket.connect(to: peer) {
            case .connected(let connected): fd = connected
            case .inProgress(let connecting): fd = connecting
            }
        } catch {
            stats.connectsFailed += 1
            throw .connectFailed(errno: error.errno)
        }
        stats.connectsStarted += 1
        let connection = makeConnection(fd: fd, peer: peer, isIncoming: false, niceness: niceness, state: .connecting)
        connection.exchange = OutgoingExchange(request: request, framing: framing, timeoutMs: Int64(timeoutMs),
                                               startedAt: loop.now, overPooledConnection: false, completion: completion)
        // Writable once connected, whether the connect finished at once or is in progress.
        do { try watchWrites(connection) { [unowned self] in self.connectReady($0) } } catch {
            connection.exchange = nil
            destroy(connection)
            throw .refusedByLoop(error)
        }
    }

    private func watchWrites(_ connection: TcpConnection, _ ready: @escaping (TcpConnection) -> Void) throws(LoopError) {
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
        let reusable = !connection.closeAfterWrite && !connection.peerClosed && connection.received.isEmpty && !isClosed
            && (pool[connection.peer]?.count ?? 0) < configuration.maxIdleOutgoingPerPeer
        if reusable {
            connection.state = .pooled
            connection.lastAction = loop.now
            pool[connection.peer, default: []].append(connection)
            stats.outgoingIdle += 1
            do { try watchReads(connection) } catch { destroy(connection) }
        } else {
            destroy(connection)
        }
        exchange.finish(.success(reply))
    }

    /// Ends an exchange whose connection was destroyed: over a pooled connection that
    /// had not yet answered, once more on a fresh one; otherwise with `error`.
    func failExchange(_ exchange: OutgoingExchange, _ error: TcpError, on connection: TcpConnection) {
        let retryable: Bool = switch error {
        case .closedByPeer, .transferFailed: true
        default: false
        }
        if exchange.overPooledConnection && retryable && connection.exchangeBytesIn == 0 && !isClosed,
           let completion = exchange.takeCompletion() {
            do {
                try send(exchange.request, to: connection.peer, framing: exchange.framing,
                         timeoutMs: Int(exchange.timeoutMs), niceness: connection.niceness, completion: completion)
            } catch {
                stats.exchangesFailed += 1
                completion(.failure(error))
            }
            return
        }
        stats.exchangesFailed += 1
        exchange.finish(.failure(error))
    }

    private func takePooled(_ peer: PeerAddress) -> TcpConnection? {
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
