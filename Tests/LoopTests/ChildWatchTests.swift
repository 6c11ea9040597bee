import CLoopShim
import Compat
import Glibc
import TestSupport
import Testing

/// A child of the test process running `/bin/sh -c script`.
private func shell(_ script: String) throws -> pid_t {
    try ChildProcesses.spawn("/bin/sh", arguments: ["-c", script])
}

/// Reaps `pid` (blocking, bounded by the child's own script) and returns its exit.
private func reap(_ pid: pid_t) -> ChildExit? {
    var status: Int32 = 0
    var result: pid_t
    repeat { result = waitpid(pid, &status, 0) } while result < 0 && errno == EINTR
    return result == pid ? ChildExit(status: status) : nil
}

extension LoopConformance {
    /// `loop.watchChild(pid:)`: a child's exit as a callback on the loop thread, that
    /// child reaped and no other (SIGCHLD on legacy, a pidfd on epoll).
    @Suite struct ChildWatches {
        @Test(arguments: LoopBackendKind.allCases)
        func aChildExitingWithAStatus(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let pid = try shell("exit 7")
                var exits: [ChildExit] = []
                let watch = try loop.watchChild(pid: pid) { exits.append($0) }
                #expect(loop.counters.registrations >= 1)
                try runUntil(loop, timeoutMs: 10_000) { !exits.isEmpty }
                try runFor(loop, ms: 50)
                #expect(exits == [.exited(7)])
                #expect(!watch.isActive)
                // Reaped by the loop: nothing left to wait for.
                #expect(waitpid(pid, nil, WNOHANG) == -1 && errno == ECHILD)
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func aChildKilledByASignal(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let pid = try shell("sleep 30")
                var exit: ChildExit?
                try loop.watchChild(pid: pid) { exit = $0 }
                try runOnce(loop)
                kill(pid, SIGKILL)
                try runUntil(loop, timeoutMs: 10_000) { exit != nil }
                #expect(exit == .killed(signal: SIGKILL))
            }
        }

        /// Several children exiting together each get their own status, and a sibling
        /// nobody watches is not reaped by the loop (waitpid on each pid, never -1).
        @Test(arguments: LoopBackendKind.allCases)
        func severalChildrenAtOnceAndAnUnwatchedSibling(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let sibling = try shell("exit 9")
                var exits: [pid_t: ChildExit] = [:]
                var pids: [pid_t] = []
                for code in 0..<6 {
                    let pid = try shell("exit \(code)")
                    pids.append(pid)
                    try loop.watchChild(pid: pid, niceness: code % 3) { exits[pid] = $0 }
                }
                try runUntil(loop, timeoutMs: 10_000) { exits.count == pids.count }
                for (code, pid) in pids.enumerated() { #expect(exits[pid] == .exited(Int32(code)), "child \(code)") }
                try runFor(loop, ms: 50)
                #expect(reap(sibling) == .exited(9), "the loop reaped a child it did not watch")
                #expect(loop.counters.registrations == 0)
            }
        }

        /// A watch cancelled before the exit never calls, and the child stays unreaped
        /// for the program to wait for.
        @Test(arguments: LoopBackendKind.allCases)
        func aWatchCancelledBeforeTheExitLeavesTheChildUnreaped(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let pid = try shell("sleep 0.1; exit 3")
                var called = false
                let watch = try loop.watchChild(pid: pid) { _ in called = true }
                try loop.unregister(watch)
                // Until well after the exit (SIGCHLD and the pidfd would both have come).
                let deadline = monotonicNanoseconds() + 5_000_000_000
                while shim_child_exited(pid) == 0 && monotonicNanoseconds() < deadline { try loop.runOnce() }
                try runFor(loop, ms: 100)
                #expect(!called && loop.counters.registrations == 0)
                #expect(shim_child_exited(pid) == 1, "the child was reaped or is still running")
                #expect(reap(pid) == .exited(3))
            }
        }

        /// A child that exited (its SIGCHLD long gone) before the watch is still reported.
        @Test(arguments: LoopBackendKind.allCases)
        func aChildThatExitedBeforeTheWatch(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let pid = try shell("exit 5")
                let deadline = monotonicNanoseconds() + 5_000_000_000
                while shim_child_exited(pid) == 0 && monotonicNanoseconds() < deadline {
                    try loop.runOnce() // takes the SIGCHLD (legacy) before there is a watch
                }
                var exit: ChildExit?
                try loop.watchChild(pid: pid) { exit = $0 }
                try runUntil(loop, timeoutMs: 5_000) { exit != nil }
                #expect(exit == .exited(5))
            }
        }

        /// A pid that is not our child (or no process, or a bad number) is a clear error;
        /// so is a second watch of one child. A watch pending at close() is dropped with
        /// the loop (its pidfd closed: `withLoop` checks every descriptor).
        @Test(arguments: LoopBackendKind.allCases)
        func aPidThatIsNotOurChildIsRefused(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                for pid in [getppid(), 1, 0, -1, getpid()] {
                    #expect(throws: LoopError.notAChild(pid)) { try loop.watchChild(pid: pid) { _ in } }
                }
                #expect(LoopError.notAChild(1).description.contains("not a child"))
                let pid = try shell("sleep 30")
                try loop.watchChild(pid: pid) { _ in }
                #expect(throws: LoopError.childAlreadyWatched(pid)) { try loop.watchChild(pid: pid) { _ in } }
                #expect(throws: LoopError.invalidNiceness(5)) { try loop.watchChild(pid: pid, niceness: 5) { _ in } }
                kill(pid, SIGKILL)
                _ = reap(pid)
            }
        }
    }
}

private func runOnce(_ loop: Loop) throws { try loop.runOnce(maxWaitMs: 0) }
