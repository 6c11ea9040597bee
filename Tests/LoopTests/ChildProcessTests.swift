import Compat
import Foundation
import Glibc
import LoopTools
import TestSupport
import Testing

/// Waits up to `timeoutMs` for `pid`; kills it if it is still running. The wait status, or nil if it had to be killed.
func reap(_ pid: pid_t, timeoutMs: Int64 = 5_000) -> Int32? {
    let deadline = monotonicNanoseconds() + timeoutMs * 1_000_000
    var status: Int32 = 0
    while monotonicNanoseconds() < deadline {
        if waitpid(pid, &status, WNOHANG) == pid { return status }
        usleep(2_000)
    }
    kill(pid, SIGKILL)
    waitpid(pid, &status, 0)
    return nil
}

/// The signals blocked in a child, as its `/proc/self/status` says; `spawn`
/// starts `/bin/grep` (no shell: dash clears its mask at start-up) with
/// stdout on the given descriptor.
func blockedInChild(_ spawn: (_ command: [String], _ output: Int32) throws -> pid_t) throws -> Set<Int32> {
    let out = PipePair()
    let pid = try spawn(["/bin/grep", "SigBlk", "/proc/self/status"], out.writeEnd)
    _ = reap(pid)
    var buf = [UInt8](repeating: 0, count: 256)
    let n = read(out.readEnd, &buf, buf.count)
    let text = String(decoding: buf[0..<max(n, 0)], as: UTF8.self)
    let hex = text.split(separator: ":").last.map { $0.filter(\.isHexDigit) } ?? ""
    let mask = UInt64(hex, radix: 16) ?? 0
    return Set((1..<64).filter { mask & (1 << UInt64($0 - 1)) != 0 }.map { Int32($0) })
}

/// `posix_spawn` of `command` with stdout on `output`, and `attributes` if given.
func rawSpawn(_ command: [String], output: Int32, attributes: UnsafePointer<posix_spawnattr_t>? = nil) -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, output, 1)
    var argv = command.map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    var pid: pid_t = 0
    #expect(posix_spawn(&pid, command[0], &actions, attributes, &argv, environ) == 0)
    return pid
}

/// Runs `body` with nothing blocked on the calling thread, as in a plain
/// program's main thread (the test runner's threads block almost everything,
/// which would hide what the loop itself blocks).
func withOpenThreadMask<R>(_ body: () throws -> R) rethrows -> R {
    var none = sigset_t()
    var saved = sigset_t()
    sigemptyset(&none)
    pthread_sigmask(SIG_SETMASK, &none, &saved)
    defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }
    return try body()
}

extension LoopConformance {
    /// Children of a program with a loop: they must not inherit the loop's
    /// blocked admin signals (an epoll loop) or blocked SIGCHLD (legacy).
    @Suite struct ChildProcessSignals {
        /// `ChildProcesses.spawn`: a real child dies of SIGTERM, while the thread that
        /// spawned it runs a loop. A raw `posix_spawn` from the same thread shows the
        /// hazard is real on epoll: that child ignores SIGTERM.
        @Test(arguments: LoopBackendKind.allCases)
        func spawnedChildDiesOfSigterm(kind: LoopBackendKind) throws {
            try withOpenThreadMask {
                try withLoop(kind) { loop in
                    try loop.runOnce()
                    let child = try ChildProcesses.spawn("/bin/sleep", arguments: ["10"])
                    usleep(50_000) // past exec
                    kill(child, SIGTERM)
                    let status = try #require(reap(child), "the child ignored SIGTERM")
                    #expect(killedBy(status) == SIGTERM)

                    if kind == .epoll {
                        var raw: pid_t = 0
                        var argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup("0.5"), nil]
                        defer { for p in argv { free(p) } }
                        #expect(posix_spawn(&raw, "/bin/sleep", nil, nil, &argv, environ) == 0)
                        usleep(50_000)
                        kill(raw, SIGTERM)
                        let rawStatus = try #require(reap(raw))
                        #expect(exited(rawStatus) == 0, "a raw posix_spawn child inherits the blocked SIGTERM")
                    }
                }
            }
        }

        /// `ChildProcesses.system` runs the command and returns its wait status.
        @Test(arguments: LoopBackendKind.allCases)
        func systemRunsTheCommand(kind: LoopBackendKind) throws {
            try withOpenThreadMask {
                try withLoop(kind) { loop in
                    try loop.runOnce()
                    #expect(exited(try ChildProcesses.system("exit 3")) == 3)
                    let status = try ChildProcesses.system("kill -TERM $$; sleep 5")
                    #expect(killedBy(status) == SIGTERM)
                }
            }
        }

        /// Children of every kind start without the library's mask changes.
        @Test(arguments: LoopBackendKind.allCases)
        func childrenStartWithoutTheLoopsMask(kind: LoopBackendKind) throws {
            try withOpenThreadMask {
                try withLoop(kind) { loop in
                    try loop.runOnce()
                    // Raw posix_spawn inherits what the loop changed (the check can fail).
                    let raw = try blockedInChild { command, out in rawSpawn(command, output: out) }
                    #expect(raw.contains(kind == .epoll ? SIGTERM : SIGCHLD))
                    // ChildProcesses.spawn.
                    let spawned = try blockedInChild { command, out in
                        try ChildProcesses.spawn(
                            command[0], arguments: Array(command.dropFirst()), streams: .init(output: out))
                    }
                    #expect(spawned.intersection(loopOwnedSignals).isEmpty, "\(spawned.sorted())")
                    // posix_spawn with the attributes the library provides.
                    let attributed = try blockedInChild { command, out in
                        var attributes = posix_spawnattr_t()
                        try ChildProcesses.spawnAttributes(&attributes)
                        defer { posix_spawnattr_destroy(&attributes) }
                        return rawSpawn(command, output: out, attributes: &attributes)
                    }
                    #expect(attributed.intersection(loopOwnedSignals).isEmpty, "\(attributed.sorted())")
                }
            }
        }

        /// Foundation's `Process` passes the caller's mask on: inside
        /// `withChildSignalMask` its child dies of SIGTERM; outside, beside an epoll
        /// loop, it ignores it (the hazard the wrapper exists for).
        @Test(arguments: LoopBackendKind.allCases)
        func foundationProcessInsideTheWrapperDiesOfSigterm(kind: LoopBackendKind) throws {
            func sleeper() -> Process {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/bin/sleep")
                process.arguments = ["10"]
                return process
            }
            try withOpenThreadMask {
                // Foundation's Process keeps descriptors of its own (its run loop's) once used.
                try withLoop(kind, checkingDescriptors: false) { loop in
                    try loop.runOnce()
                    let wrapped = sleeper()
                    try ChildProcesses.withChildSignalMask { try wrapped.run() }
                    #expect(isBlocked(SIGCHLD) == (kind == .legacy) && isBlocked(SIGTERM) == (kind == .epoll))
                    usleep(50_000)
                    kill(wrapped.processIdentifier, SIGTERM)
                    let started = monotonicNanoseconds()
                    wrapped.waitUntilExit()
                    #expect(wrapped.terminationReason == .uncaughtSignal)
                    #expect(wrapped.terminationStatus == SIGTERM)
                    #expect(elapsedMs(since: started) < 4_000)

                    if kind == .epoll {
                        let bare = sleeper()
                        bare.arguments = ["0.5"]
                        try bare.run()
                        usleep(50_000)
                        kill(bare.processIdentifier, SIGTERM)
                        bare.waitUntilExit()
                        #expect(
                            bare.terminationReason == .exit,
                            "Foundation's child took SIGTERM: the wrapper is not needed")
                    }
                }
            }
        }

        /// A SIGTERM sent to the process while `withChildSignalMask` has the thread's
        /// mask open is not fatal: it reaches the epoll loop afterwards.
        @Test func signalDuringTheOpenMaskReachesTheLoop() throws {
            try withOpenThreadMask {
                try withLoop(.epoll) { loop in
                    try loop.runOnce()
                    ChildProcesses.withChildSignalMask {
                        pthread_kill(pthread_self(), SIGTERM)
                    }
                    #expect(try runUntil(loop, timeoutMs: 2_000) { loop.shutdownReason != nil })
                    #expect(loop.takeShutdownRequest() == .signal(SIGTERM))
                }
            }
        }
    }
}
