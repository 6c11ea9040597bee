import Testing

@testable import HttpServer
@testable import TcpServer

/// A chunked reply of `count` one-byte chunks ("1\r\nx\r\n" each), with its head.
func oneByteChunks(_ count: Int, head: String = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") -> [UInt8] {
    var reply = Array(head.utf8)
    reply.reserveCapacity(reply.count + count * 6 + 5)
    for i in 0..<count { reply += [0x31, 0x0d, 0x0a, UInt8(0x61 + i % 26), 0x0d, 0x0a] }
    return reply + Array("0\r\n\r\n".utf8)
}

/// Frames `reply` as the TcpServer does: every read appends to what came before,
/// and the framing is asked again with everything from the message's start.
private func frameInReads(_ framing: HttpResponseFraming, _ reply: [UInt8], readBytes: Int) -> (TcpFrame, calls: Int) {
    var received: [UInt8] = []
    var calls = 0
    var offset = 0
    while offset < reply.count {
        let end = min(offset + readBytes, reply.count)
        received += reply[offset..<end]
        offset = end
        calls += 1
        let frame = framing.frame(received[...], atEnd: false)
        if frame != .incomplete { return (frame, calls) }
    }
    return (.incomplete, calls)
}

extension TcpServerLoopTests {
    @Suite struct HttpClientFraming {
        /// A chunked body read a little at a time is examined once, not again from its
        /// start at each read: before, every read cost the whole body so far (a reply of
        /// 1.2 MB in one-byte chunks cost 263 ms a read), quadratic in the body.
        @Test func chunkedFramingResumesWhereItStopped() {
            for count in [2_000, 4_000] {
                let reply = oneByteChunks(count)
                let framing = HttpResponseFraming(limits: HttpLimits(), isHead: false)
                let (frame, calls) = frameInReads(framing, reply, readBytes: 60)
                #expect(frame == .complete(length: reply.count, reusable: true))
                #expect(calls >= count / 10)
                // Each byte once, and the few a line end straddling two reads looks at again.
                #expect(
                    framing.state.bytesExamined <= reply.count + 2 * calls,
                    "\(count) chunks in \(calls) reads: \(framing.state.bytesExamined) bytes examined for \(reply.count)"
                )
                let body = framing.parse(reply)?.body ?? []
                #expect(body.count == count && body.first == 0x61 && body.last == UInt8(0x61 + (count - 1) % 26))
            }
        }
    }
}
