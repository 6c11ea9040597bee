extension ReferenceModel {
    // MARK: Files, as the kernel keeps them

    /// Linux's pipe: 16 page buffers; a write of at most PIPE_BUF bytes joins the last
    /// page if it fits whole, else takes a page of its own, else is refused whole.
    /// The ends are weak: a file is owned by the slots that name it (and gone with the last).
    final class Pipe {
        var pages: [Int] = []
        weak var reader: File?
        weak var writer: File?
        var full: Bool { pages.count >= 16 }
    }

    final class SocketPair {
        var inbound = [0, 0]
        /// End i wrote until refused: its data sits in the peer's queue.
        var full = [false, false]
        /// Writes end i has queued at its peer since the peer drained (`socketWriteLimit`).
        var queued = [0, 0]
        weak var first: File?
        weak var second: File?
        func end(_ i: Int) -> File? { i == 0 ? first : second }
    }

    final class File {
        enum Kind {
            case pipeRead(Pipe)
            case pipeWrite(Pipe)
            case socket(SocketPair, Int)
            case regular
        }
        let kind: Kind
        /// Slots naming this open file; at 0 it is closed.
        var references = 0
        init(_ kind: Kind) { self.kind = kind }
        var isOpen: Bool { references > 0 }
    }

    /// select's view: readable covers data, end of file, hang-up and error; writable covers space and error.
    func readiness(_ file: File) -> (readable: Bool, writable: Bool) {
        switch file.kind {
        case .regular:
            return (true, true)
        case .pipeRead(let p):
            return (!p.pages.isEmpty || !(p.writer?.isOpen ?? false), false)
        case .pipeWrite(let p):
            let readerGone = !(p.reader?.isOpen ?? false)
            return (readerGone, readerGone || !p.full)
        case .socket(let pair, let end):
            let peerGone = !(pair.end(1 - end)?.isOpen ?? false)
            return (pair.inbound[end] > 0 || peerGone, peerGone || !pair.full[end])
        }
    }

    func put(_ file: File?, at slot: Int) {
        if let old = slots[slot] { old.references -= 1 }
        file?.references += 1
        slots[slot] = file
        orphanRegistrations(of: slot)
    }

    /// A write (or `fill`: writes until refused). Writing where nobody can read raises SIGPIPE.
    func write(_ slot: Int, bytes: Int, fill: Bool) {
        guard let file = slots[slot] else { return }
        switch file.kind {
        case .pipeWrite(let p):
            guard p.reader?.isOpen ?? false else {
                sawPipe = true
                return
            }
            if fill {
                p.pages = Array(repeating: 4096, count: 16)
            } else if let last = p.pages.last, last + bytes <= 4096 {
                p.pages[p.pages.count - 1] += bytes
            } else if !p.full {
                p.pages.append(bytes)
            }
        case .socket(let pair, let end):
            // Every write attempt counts against the limit (the script skips those beyond it).
            if !fill {
                guard pair.queued[end] < socketWriteLimit else { return }
                pair.queued[end] += 1
            }
            guard pair.end(1 - end)?.isOpen ?? false else {
                sawPipe = true
                return
            }
            guard !pair.full[end] else { return }
            if fill {
                pair.inbound[1 - end] += 1 << 16
                pair.full[end] = true
            } else {
                pair.inbound[1 - end] += bytes
            }
        case .pipeRead, .regular:
            return
        }
    }

    func drain(_ slot: Int) {
        guard let file = slots[slot] else { return }
        switch file.kind {
        case .pipeRead(let p):
            p.pages = []
        case .socket(let pair, let end):
            pair.inbound[end] = 0
            pair.full[1 - end] = false
            pair.queued[1 - end] = 0
        case .pipeWrite, .regular:
            return
        }
    }
}
