import Glibc
import TestSupport
import Testing

@testable import TcpServer

/// A server on the loop that answers its one connection a piece at a time, from a
/// sleep callback: `piece` bytes of `reply` every `everyMs`. It never reads the request
/// (the close at the end of the test may reset the connection; the test is over by then).
final class TricklingOrigin {
    let loop: Loop
    let listener: Int32
    let port: UInt16
    private(set) var connection: Int32 = -1
    private let reply: [UInt8]
    private let piece: Int
    private(set) var sent = 0
    private var registration: Registration?

    init(_ loop: Loop, reply: [UInt8], piece: Int, everyMs: Int) throws {
        self.loop = loop
        self.reply = reply
        self.piece = piece
        (listener, port) = loopbackListener(nonBlocking: true, backlog: 4)
        registration = try loop.registerSleep(every: everyMs) { [unowned self] in self.tick() }
    }

    private func tick() {
        if connection < 0 {
            connection = accept(listener, nil, nil)
            if connection >= 0 { _ = fcntl(connection, F_SETFL, fcntl(connection, F_GETFL) | O_NONBLOCK) }
            return
        }
        guard sent < reply.count else { return }
        let end = min(sent + piece, reply.count)
        let n = reply[sent..<end].withUnsafeBytes {
            Glibc.send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
        }
        if n > 0 { sent += n }
    }

    func close() {
        if let r = registration { try? loop.unregister(r) }
        registration = nil
        if connection >= 0 { Glibc.close(connection) }
        connection = -1
        Glibc.close(listener)
    }
}
