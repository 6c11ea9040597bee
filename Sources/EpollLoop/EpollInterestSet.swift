import CLoopShim
import Glibc
import LoopCore

/// The epoll set of one loop, level-triggered: which descriptors the kernel
/// watches for the loop, and for what, and what the kernel reports back.
///
/// The kernel entry of a descriptor belongs to its file, not to its number: a
/// file closed by its owner while a dup of it lives on (another fd, a child
/// process) stays in the set under its old number, reporting forever, beyond
/// the reach of any DEL. So every entry carries a fresh tag, events of an
/// unknown tag trigger a rebuild of the set, and a descriptor that reports
/// ready for long is checked against the file it was added with (`FileIdentity`).
final class EpollInterestSet {
    /// The backend's own descriptors in the set, under generation 0, which the core never hands out.
    enum Control: UInt64 {
        case wake = 1
        case signal = 3
    }

    @exclusivity(unchecked) private var epollFD: Int32 = -1
    private var controls: [(Control, Int32)] = []
    /// What the kernel was last told per fd: its `data` (0 = nothing), to
    /// recognise events of kernel entries the loop no longer knows about.
    /// `data` is a fresh tag (high half) and the fd (low half), the tag new on
    /// every ADD and MOD: a kernel entry left behind when its fd was closed
    /// while a dup of the file lives on keeps its old tag, so it can never pass
    /// for the entry of a new file under the same number.
    private struct Watched {
        /// Tag and fd as given to the kernel; 0 = not watched.
        var data: UInt64 = 0
        var interest: Interest = []
        /// The core's generation for the fd's registration, handed back with its events.
        var generation: UInt32 = 0
        /// The file when it was added, to recognise the number closed or reused.
        var file: FileIdentity?
        /// Consecutive waits that reported the fd ready, and the last such wait.
        var streak: UInt32 = 0
        var lastReadyWait: UInt32 = 0
    }
    @exclusivity(unchecked) private var watched: [Watched] = []
    @exclusivity(unchecked) private var lastTag: UInt32 = 0
    @exclusivity(unchecked) private var waits: UInt32 = 0
    /// After this many consecutive ready reports an fd is checked (one `fstat`):
    /// a level-triggered entry whose fd was closed without unregistering, while
    /// a dup keeps the file alive, reports forever under its current tag.
    private static let revalidateAfter: UInt32 = 64
    @exclusivity(unchecked) private var needsRebuild = false
    /// Regular files (and other fds epoll refuses with EPERM): select reports them
    /// always ready, so this set does too, without the kernel. The file's
    /// identity is kept to notice the number being closed or reused.
    private struct AlwaysReady {
        var generation: UInt32
        var interest: Interest
        var file: FileIdentity
    }
    @exclusivity(unchecked) private var alwaysReady: [Int32: AlwaysReady] = [:]
    @exclusivity(unchecked) private var datas = [UInt64](repeating: 0, count: 256)
    @exclusivity(unchecked) private var flags = [UInt32](repeating: 0, count: 256)

    /// What select counts as readable and as writable (the kernel's POLLIN_SET and
    /// POLLOUT_SET): a hang-up is readable only (a pipe whose writer is gone, a
    /// socket whose peer closed), an error both.
    private static let readableEvents =
        EPOLLIN.rawValue | EPOLLRDNORM.rawValue | EPOLLRDBAND.rawValue
        | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue
    private static let writableEvents =
        EPOLLOUT.rawValue | EPOLLWRNORM.rawValue | EPOLLWRBAND.rawValue | EPOLLERR.rawValue

    /// Creates the epoll set.
    func open() throws(SystemError) {
        epollFD = try systemCall("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
    }

    /// Watches the backend's own descriptors for reading, in this set and in every rebuilt one.
    func addControls(_ controls: [(Control, Int32)]) throws(SystemError) {
        self.controls = controls
        try addControls(to: epollFD)
    }

    /// Closes the set; the kernel forgets every entry with it.
    func close() {
        closeDescriptor(epollFD)
        epollFD = -1
    }

    private func addControls(to epfd: Int32) throws(SystemError) {
        for (c, fd) in controls {
            _ = try systemCall("epoll_ctl(ADD)") {
                shim_epoll_ctl(epfd, EPOLL_CTL_ADD, fd, EPOLLIN.rawValue, c.rawValue)
            }
        }
    }

    private static func events(for interest: Interest) -> UInt32 {
        var events: UInt32 = 0
        if interest.contains(.read) { events |= EPOLLIN.rawValue | EPOLLRDHUP.rawValue }
        if interest.contains(.write) { events |= EPOLLOUT.rawValue }
        return events
    }

    // MARK: Interest

    /// The watched events of `fd` become `new` (nothing: the entry goes).
    func setInterest(fd: Int32, generation: UInt32, new: Interest) throws(LoopError) {
        let index = Int(fd)
        if watched.count <= index { watched += repeatElement(Watched(), count: index + 1 - watched.count) }
        // Every registration asks the kernel again, so a number that named a
        // regular file and now names a pipe is watched as a pipe.
        alwaysReady[fd] = nil
        if new.isEmpty {
            if watched[index].data != 0 {
                do {
                    _ = try systemCall("epoll_ctl(DEL)") { shim_epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, 0, 0) }
                } catch {
                    // Deliberately ignored: the owner may have closed the fd already
                    // (ENOENT, EBADF), and the kernel then dropped the entry itself.
                }
            }
            forget(index)
            return
        }
        try watch(fd: fd, interest: new, generation: generation)
    }

    /// Adds or modifies the kernel entry of `fd` under a fresh tag.
    private func watch(fd: Int32, interest: Interest, generation: UInt32) throws(LoopError) {
        let index = Int(fd)
        lastTag &+= 1
        if lastTag == 0 { lastTag = 1 } // 0 marks the backend's own descriptors
        let data = UInt64(lastTag) << 32 | UInt64(UInt32(bitPattern: fd))
        let events = Self.events(for: interest)
        var op = watched[index].data != 0 ? EPOLL_CTL_MOD : EPOLL_CTL_ADD
        while true {
            do {
                _ = try systemCall("epoll_ctl(\(fd))") { shim_epoll_ctl(epollFD, op, fd, events, data) }
                // The file the kernel entry now belongs to, for the periodic check to compare
                // against: also after MOD failed with ENOENT and became an ADD (another file
                // under the number), and after a MOD that found the entry of a file dup'd back
                // onto the number. One fstat and one fcntl per interest change, never per event.
                watched[index].file = FileIdentity.current(of: fd)
                watched[index].data = data
                watched[index].interest = interest
                watched[index].generation = generation
                return
            } catch {
                switch (error.errno, op) {
                // The kernel has no entry for the file now under this number: the owner
                // closed the fd (the kernel forgot it), maybe reusing the number. An
                // entry of the old file that a dup keeps alive still carries its old
                // tag, and its first event triggers a rebuild.
                case (ENOENT, EPOLL_CTL_MOD): op = EPOLL_CTL_ADD
                case (EEXIST, EPOLL_CTL_ADD): op = EPOLL_CTL_MOD
                // A file epoll cannot watch (a regular file), also when the number named a pipe before (MOD).
                case (EPERM, _):
                    forget(index)
                    let file: FileIdentity
                    do { file = try FileIdentity(of: fd) } catch { throw .system(error) }
                    alwaysReady[fd] = AlwaysReady(generation: generation, interest: interest, file: file)
                    return
                default: throw .system(error)
                }
            }
        }
    }

    private func forget(_ index: Int) {
        watched[index] = Watched()
    }

    // MARK: Waiting

    /// The wait's timeout: none while an always-ready descriptor is watched (it is ready now).
    func timeout(forWaitOf timeoutMs: Int) -> Int {
        if !alwaysReady.isEmpty { refreshAlwaysReady() }
        return alwaysReady.isEmpty ? timeoutMs : 0
    }

    /// One `epoll_wait`: how many entries reported, or nil when a signal ended it.
    func wait(timeoutMs: Int) throws(SystemError) -> Int? {
        defer { waits &+= 1 }
        let n = try interruptibleSystemCall("epoll_wait") {
            datas.withUnsafeMutableBufferPointer { d in
                flags.withUnsafeMutableBufferPointer { f in
                    shim_epoll_wait(epollFD, d.baseAddress, f.baseAddress, Int32(d.count), Int32(timeoutMs))
                }
            }
        }
        return n.map { Int($0) }
    }

    /// Appends the ready descriptors of the last wait's `count` reports to `events`,
    /// and the always-ready ones; a report of a backend descriptor goes to `control`.
    func collect(_ count: Int, into events: inout [ReadyEvent], control: (Control?) -> Void) {
        for i in 0..<count {
            let data = datas[i]
            let ev = flags[i]
            if data >> 32 == 0 {
                control(Control(rawValue: data))
                continue
            }
            let fd = Int32(truncatingIfNeeded: data)
            guard Int(fd) < watched.count, watched[Int(fd)].data == data else {
                needsRebuild = true
                continue
            }
            guard stillReportsTheWatchedFile(fd) else { continue }
            // Only what was asked for, as select: a hang-up or an error comes unasked, and a
            // read registration added later in this batch must not take it for a read event.
            let interest = watched[Int(fd)].interest
            events.append(
                ReadyEvent(
                    fd: fd, generation: watched[Int(fd)].generation,
                    readable: interest.contains(.read) && ev & Self.readableEvents != 0,
                    writable: interest.contains(.write) && ev & Self.writableEvents != 0))
        }
        if needsRebuild { rebuild() }
        for (fd, entry) in alwaysReady {
            events.append(
                ReadyEvent(
                    fd: fd, generation: entry.generation,
                    readable: entry.interest.contains(.read), writable: entry.interest.contains(.write)))
        }
    }

    /// Counts consecutive ready reports, and every `revalidateAfter` of them checks
    /// the fd: closed (select's EBADF clean-up drops it, and so does this set)
    /// or another file under the number now (watched afresh, as select would by
    /// number). Either way the old kernel entry goes with a rebuild.
    private func stillReportsTheWatchedFile(_ fd: Int32) -> Bool {
        let index = Int(fd)
        watched[index].streak = watched[index].lastReadyWait == waits &- 1 ? watched[index].streak + 1 : 1
        watched[index].lastReadyWait = waits
        guard watched[index].streak >= Self.revalidateAfter else { return true }
        watched[index].streak = 0
        guard let file = FileIdentity.current(of: fd) else {
            forget(index)
            needsRebuild = true
            return false
        }
        guard file != watched[index].file else { return true }
        let (interest, generation) = (watched[index].interest, watched[index].generation)
        forget(index)
        needsRebuild = true
        watchAfresh(fd: fd, interest: interest, generation: generation)
        return false
    }

    /// select drops a closed fd (EBADF) and watches whatever file a reused number
    /// names; the always-ready set follows suit: a closed fd leaves it, a new
    /// file under the number goes to the kernel (or stays, if also refused).
    private func refreshAlwaysReady() {
        for (fd, entry) in alwaysReady {
            guard let file = FileIdentity.current(of: fd) else {
                alwaysReady[fd] = nil
                continue
            }
            if file != entry.file {
                alwaysReady[fd] = nil
                watchAfresh(fd: fd, interest: entry.interest, generation: entry.generation)
            }
        }
    }

    /// Another file under a watched number, found while waiting: watched as the
    /// registration asked, as select would by number.
    private func watchAfresh(fd: Int32, interest: Interest, generation: UInt32) {
        do {
            try watch(fd: fd, interest: interest, generation: generation)
        } catch {
            // Deliberately not reported: nobody asked (the wait found it), and the
            // registration stays; the number is simply unwatched, as if closed.
            forget(Int(fd))
        }
    }

    /// The cure for entries no DEL can reach: a fresh set holding only what the loop knows.
    private func rebuild() {
        needsRebuild = false
        let fresh: Int32
        do {
            fresh = try systemCall("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
            do { try addControls(to: fresh) } catch {
                closeDescriptor(fresh)
                throw error
            }
        } catch {
            // Deliberately ignored: the old set keeps working with its stale entry,
            // whose next event asks for a rebuild again.
            return
        }
        for (fd, w) in watched.enumerated() where w.data != 0 {
            do {
                _ = try systemCall("epoll_ctl(ADD)") {
                    shim_epoll_ctl(fresh, EPOLL_CTL_ADD, Int32(fd), Self.events(for: w.interest), w.data)
                }
            } catch {
                // Deliberately ignored: an fd its owner closed simply stays out (EBADF),
                // as the kernel would have it.
            }
        }
        closeDescriptor(epollFD)
        epollFD = fresh
    }
}
