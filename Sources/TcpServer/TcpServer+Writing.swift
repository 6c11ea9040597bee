import Glibc
import Sockets

/// The write side: replies and requests written until done or the socket would block.
extension TcpServer {
    /// Answers `request` on its connection. False when the connection is gone (the
    /// peer left, a timeout, least-used closing): the reply is dropped and counted.
    /// `thenClose` closes the connection once the reply is written.
    @discardableResult
    public func reply(_ bytes: [UInt8], to request: TcpRequest, thenClose: Bool = false) -> Bool {
        guard let connection = connections[request.connection], connection.state == .handling else {
            stats.repliesDropped += 1
            return false
        }
        if thenClose { connection.closeAfterWrite = true }
        stats.repliesOut += 1
        startWriting(connection, bytes)
        return true
    }

    /// Closes a connection now (a handler that will not answer).
    public func close(_ id: TcpConnectionID) {
        if let connection = connections[id] { destroy(connection) }
    }

    func startWriting(_ connection: TcpConnection, _ bytes: [UInt8]) {
        connection.state = .writing
        connection.pending = bytes
        connection.pendingOffset = 0
        writePending(connection)
    }

    /// Writes until done or the socket would block; the write callback is
    /// registered only while it would (a writable socket is almost always writable).
    func writePending(_ connection: TcpConnection) {
        guard connection.isOpen, connection.state == .writing else { return }
        while connection.pendingOffset < connection.pending.count {
            let outcome = connection.pending.withUnsafeBytes {
                StreamSocket.send(connection.fd, UnsafeRawBufferPointer(rebasing: $0[connection.pendingOffset...]))
            }
            switch outcome {
            case .transferred(let n):
                connection.pendingOffset += n
                connection.lastAction = loop.now
                stats.bytesOut += n
            case .wouldBlock:
                if connection.writeRegistration == nil {
                    stats.writeWaits += 1
                    do {
                        connection.writeRegistration = try loop.registerWrite(
                            fd: connection.fd, niceness: connection.niceness
                        ) {
                            [unowned self, connection] _ in self.writePending(connection)
                        }
                    } catch {
                        destroy(connection, error: .refusedByLoop(error))
                    }
                }
                return
            case .endOfStream, .failed:
                let errno: Int32 = if case .failed(let e) = outcome { e } else { EPIPE }
                destroy(connection, error: .transferFailed(errno: errno))
                return
            }
        }
        if let r = connection.writeRegistration { try? loop.unregister(r) }
        connection.writeRegistration = nil
        connection.pending = []
        written(connection)
    }

    /// A message is out: an incoming connection reads the next request (or closes);
    /// an outgoing one reads the reply.
    func written(_ connection: TcpConnection) {
        if connection.isIncoming {
            if connection.closeAfterWrite {
                destroy(connection)
                return
            }
            connection.state = .reading
            connection.messageStartedAt = connection.received.isEmpty ? nil : loop.now
        } else {
            connection.state = .reading
            connection.exchangeBytesIn = 0
        }
        serveBuffered(connection)
    }
}
