import Compat
import Glibc
import LoopTools
import TestSupport
import Testing

extension LoopConformance {
    /// fds closed without unregistering, dup'd, and their numbers reused: the
    /// loop watches the file the number names now, and never spins on a kernel
    /// entry of a file it no longer knows.
    @Suite struct DescriptorLifecycle {
        /// The kernel entry of a closed fd whose file a dup keeps alive must not pass
        /// for the entry of the new file under the same number, even though the loop
        /// re-registered that number: one tag per epoll_ctl, not per fd.
        @Test(arguments: LoopBackendKind.allCases)
        func staleKernelEntryOfAReusedNumberNeverReachesTheNewFile(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let a = PipePair()
                let b = PipePair()
                let fd = dup(a.readEnd)
                var calls = 0
                try loop.registerRead(fd: fd) { _ in calls += 1 }
                try loop.runOnce()
                close(fd) // not unregistered; `a` lives on in a.readEnd
                #expect(dup2(b.readEnd, fd) == fd)
                defer { close(fd) }
                try loop.registerRead(fd: fd) { _ in calls += 1 }
                a.fill() // the old file becomes readable; the new one is empty
                let before = loop.counters.polls
                try runFor(loop, ms: 200)
                #expect(calls == 0, "callbacks for an empty pipe: \(calls)")
                // Idle: 5-40 polls in 200 ms; a spin on the stale entry made 52,000.
                #expect(loop.counters.polls - before < 400, "\(loop.counters.polls - before) polls in 200 ms")
                b.fill()
                #expect(try runUntil(loop, timeoutMs: 2_000) { calls > 0 })
            }
        }

        /// A regular file (always ready) closed without unregistering, its number
        /// reused for an empty pipe: select watches the pipe, and so must epoll.
        @Test(arguments: LoopBackendKind.allCases)
        func regularFileNumberReusedForAPipeFollowsThePipe(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let fd = try unlinkedRegularFile()
                var calls = 0
                try loop.registerRead(fd: fd) { _ in calls += 1 }
                #expect(try runUntil(loop, timeoutMs: 2_000) { calls >= 2 })
                close(fd)
                let p = PipePair()
                #expect(dup2(p.readEnd, fd) == fd)
                defer { close(fd) }
                try loop.runOnce()
                let afterReuse = calls
                let before = loop.counters.polls
                try runFor(loop, ms: 100)
                #expect(calls == afterReuse, "\(calls - afterReuse) callbacks for an empty pipe in 100 ms")
                #expect(loop.counters.polls - before < 200, "\(loop.counters.polls - before) polls in 100 ms")
                p.fill()
                #expect(try runUntil(loop, timeoutMs: 2_000) { calls > afterReuse })
            }
        }

        /// The same, re-registered explicitly: the new registration asks the kernel again.
        @Test(arguments: LoopBackendKind.allCases)
        func reRegisteringAReusedRegularFileNumberWatchesTheNewFile(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let fd = try unlinkedRegularFile()
                let old = try loop.registerRead(fd: fd) { _ in }
                try loop.runOnce()
                close(fd)
                try loop.unregister(old)
                let p = PipePair()
                #expect(dup2(p.readEnd, fd) == fd)
                defer { close(fd) }
                var calls = 0
                try loop.registerRead(fd: fd) { _ in calls += 1 }
                try runFor(loop, ms: 100)
                #expect(calls == 0, "\(calls) callbacks for an empty pipe")
                p.fill()
                #expect(try runUntil(loop, timeoutMs: 2_000) { calls > 0 })
            }
        }

        /// Registering the same owner again returns the first handle, but re-arms the
        /// number: after close-without-unregister and reuse, the new file is watched.
        @Test(arguments: LoopBackendKind.allCases)
        func sameOwnerAgainAfterReuseWatchesTheNewFile(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let first = PipePair()
                let second = PipePair()
                let fd = dup(first.readEnd)
                var fired = 0
                let handle = try loop.registerRead(fd: fd, owner: "reader") { _ in
                    fired += 1
                    second.drain()
                }
                try loop.runOnce()
                close(fd)
                try loop.runOnce() // legacy: select's EBADF drops the number
                #expect(dup2(second.readEnd, fd) == fd)
                defer { close(fd) }
                let again = try loop.registerRead(fd: fd, owner: "reader") { _ in fired += 100 }
                #expect(again === handle)
                second.fill()
                #expect(try runUntil(loop, timeoutMs: 2_000) { fired > 0 })
                #expect(fired < 100, "the first handle's callback runs, not the second's")
            }
        }

        /// Closed without unregistering while a dup keeps the file alive and readable:
        /// select drops the fd (EBADF) and runs no callback; epoll's kernel entry keeps
        /// reporting under the current tag until the backend's check after 64
        /// consecutive ready reports finds the fd closed: at most 64 callbacks.
        @Test(arguments: LoopBackendKind.allCases)
        func closeWithoutUnregisterWhileADupLivesDoesNotSpin(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let p = PipePair()
                let fd = dup(p.readEnd)
                var calls = 0
                try loop.registerRead(fd: fd) { _ in calls += 1 }
                p.fill()
                try loop.runOnce()
                close(fd) // p.readEnd keeps the readable file alive
                let before = loop.counters.polls
                let callsBefore = calls
                try runFor(loop, ms: 100)
                // A spin made 22,000 polls and callbacks on the closed fd in 100 ms.
                #expect(loop.counters.polls - before < 400, "\(loop.counters.polls - before) polls in 100 ms")
                let bound = kind == .epoll ? 64 : 0
                #expect(calls - callsBefore <= bound, "\(calls - callsBefore) callbacks for a closed fd")
                // Dropped for good: no more callbacks (the number may already name one of the loop's own files).
                let afterDrop = calls
                try runFor(loop, ms: 50)
                #expect(calls == afterDrop, "\(calls - afterDrop) callbacks after the fd was found closed")
            }
        }
        /// The number of a pipe's read end given the same pipe's write end while a dup
        /// keeps the readable read end alive: both ends have one inode, so the periodic
        /// check must tell them apart by access mode, or the stale entry reports forever.
        @Test(arguments: LoopBackendKind.allCases)
        func numberGivenTheOtherEndOfTheSamePipeDoesNotSpin(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let p = PipePair()
                let fd = dup(p.readEnd)
                defer { close(fd) }
                var calls = 0
                try loop.registerRead(fd: fd) { _ in calls += 1 }
                p.fill()
                try loop.runOnce()
                dup2(p.writeEnd, fd) // p.readEnd keeps the readable read end alive
                let callsBefore = calls
                for _ in 0..<200 { try loop.runOnce() }
                // The write end is never readable: select reports nothing; epoll at most
                // until its check after 64 consecutive ready waits.
                #expect(
                    calls - callsBefore <= (kind == .epoll ? 64 : 0),
                    "\(calls - callsBefore) callbacks in 200 polls for a write end")
            }
        }
    }
}
