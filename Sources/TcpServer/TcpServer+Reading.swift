import Sockets

/// The read side: bytes read into a connection's buffer, framed into whole messages
/// for the handler (incoming) or the exchange's completion (outgoing).
extension TcpServer {
    func watchReads(_ connection: TcpConnection) throws(LoopError) {
        guard connection.readRegistration == nil, !connection.peerClosed else { return }
        connection.readRegistration = try loop.registerRead(fd: connection.fd, niceness: connection.niceness) {
            [unowned self, connection] _ in self.readable(connection)
        }
    }

    func stopWatchingReads(_ connection: TcpConnection) {
        if let r = connection.readRegistration { try? loop.unregister(r) }
        connection.readRegistration = nil
    }

    /// Reads what is there (up to the message limit), then frames it.
    func readable(_ connection: TcpConnection) {
        guard connection.isOpen else { return }
        if connection.state == .pooled {
            // An idle pooled connection has nothing to say: readable means closed, or garbage.
            destroy(connection)
            return
        }
        // An incoming connection reads its allowance (read-ahead and budget); the rest
        // stays in the socket, readable again at the next poll if the framing needs it.
        var allowance = connection.isIncoming ? incomingReadAllowance(connection) : Int.max
        guard allowance > 0 else { return }
        reading: while allowance > 0 && connection.received.count <= configuration.maxMessageBytes {
            let asked = min(readBuffer.count, allowance)
            let outcome = readBuffer.withUnsafeMutableBytes {
                StreamSocket.receive(connection.fd, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<asked]))
            }
            switch outcome {
            case .transferred(let n):
                if connection.received.isEmpty { connection.messageStartedAt = loop.now }
                appendReceived(connection, readBuffer[0..<n])
                allowance -= n
                connection.lastAction = loop.now
                connection.exchangeBytesIn += n
                stats.bytesIn += n
                // A short read drained the socket; a full one may have left more.
                if n < asked { break reading }
            case .wouldBlock:
                break reading
            case .endOfStream:
                connection.peerClosed = true
                stopWatchingReads(connection)
                break reading
            case .failed(let e):
                if !connection.received.isEmpty || connection.exchange != nil { stats.truncated += 1 }
                destroy(connection, error: .transferFailed(errno: e))
                return
            }
        }
        serveBuffered(connection)
    }

    /// Frames the bytes read: a whole message goes to the handler (incoming) or the
    /// exchange's completion (outgoing), and the next one is framed once the
    /// connection is reading again — a pipelined request waits for its turn here,
    /// and after `maxRequestsPerTurn` for the loop's next turn.
    func serveBuffered(_ connection: TcpConnection) {
        guard !connection.framingInProgress else { return }
        connection.framingInProgress = true
        defer { connection.framingInProgress = false }
        var served = 0
        while connection.isOpen && connection.state == .reading {
            if connection.isIncoming && served >= max(configuration.maxRequestsPerTurn, 1)
                && !connection.received.isEmpty
            {
                // Nothing more is read until its turn comes (the registration a request
                // answered at once left in place goes too): it has served its share.
                stopWatchingReads(connection)
                awaitNextTurn(connection)
                return
            }
            let frameWith = connection.exchange?.framing ?? framing
            switch frameWith.frame(connection.received[...], atEnd: connection.peerClosed, of: connection.id) {
            case .incomplete:
                if connection.received.count > configuration.maxMessageBytes {
                    refuseMessage(connection, reply: frameWith.oversizedReply)
                } else if connection.peerClosed {
                    if connection.received.isEmpty && connection.exchange == nil {
                        destroy(connection) // a keep-alive peer that left between messages
                    } else {
                        stats.truncated += 1
                        destroy(connection, error: .closedByPeer)
                    }
                } else {
                    do { try watchReads(connection) } catch { destroy(connection, error: .refusedByLoop(error)) }
                }
                return
            case .complete(let length, let reusable):
                let length = min(max(length, 0), connection.received.count)
                let message = Array(connection.received[0..<length])
                consumeReceived(connection, length)
                connection.messageStartedAt = connection.received.isEmpty ? nil : loop.now
                if !reusable { connection.closeAfterWrite = true }
                if connection.isIncoming {
                    connection.state = .handling
                    served += 1
                    stats.requestsIn += 1
                    onRequest(
                        TcpRequest(
                            connection: connection.id, peer: connection.peer, bytes: message,
                            niceness: connection.niceness))
                    // Nothing is read while a request is handled or its reply written. Most
                    // handlers reply at once and the reply goes out whole: the connection is
                    // reading again and keeps its registration, where taking it away and back
                    // cost two epoll_ctl calls a request. Stopped only if it is not.
                    if connection.isOpen && connection.state != .reading { stopWatchingReads(connection) }
                } else {
                    stopWatchingReads(connection)
                    completeExchange(connection, reply: message)
                }
            case .refused(let reply):
                refuseMessage(connection, reply: reply)
                return
            }
        }
    }

    /// A message that can never be served: say why (incoming) or fail the exchange, and close.
    func refuseMessage(_ connection: TcpConnection, reply: [UInt8]) {
        stats.refusedMessages += 1
        stopWatchingReads(connection)
        if connection.isIncoming && !reply.isEmpty {
            dropReceived(connection)
            connection.closeAfterWrite = true
            startWriting(connection, reply)
        } else {
            destroy(connection, error: .malformedReply)
        }
    }
}
