import Compat
import Glibc
import LoopTools
import TestSupport
import Testing

extension LoopConformance {
    /// Whole processes: the node and probes of the harness, sent real signals
    /// and forked, where every thread is the program's own.
    @Suite struct NodeProcesses {
        /// The documented `serve --seconds` path closes the loop while the heartbeat
        /// still owns the server (a segfault in `close()` before).
        @Test(arguments: LoopBackendKind.allCases)
        func serveForSecondsExitsCleanly(kind: LoopBackendKind) throws {
            let node = try ChildProcess(["serve", "--backend", kind.rawValue, "--seconds", "1"])
            #expect(node.line(startingWith: "stopped") != nil)
            let status = try #require(node.waitForExit())
            #expect(exited(status) == 0, "status \(status)")
        }

        /// Once shutdown has begun the node exits with its own status, however many
        /// more SIGHUPs arrive (the restored default disposition killed it before).
        @Test(arguments: LoopBackendKind.allCases)
        func signalStormDuringShutdownCannotKillTheNode(kind: LoopBackendKind) throws {
            for _ in 0..<5 {
                let node = try ChildProcess(["serve", "--backend", kind.rawValue])
                _ = try #require(node.line(startingWith: "serving"))
                var status: Int32 = 0
                var exitedNow = false
                let deadline = monotonicNanoseconds() + 10_000_000_000
                while !exitedNow && monotonicNanoseconds() < deadline {
                    kill(node.pid, SIGHUP)
                    usleep(50)
                    exitedNow = waitpid(node.pid, &status, WNOHANG) == node.pid
                }
                try #require(exitedNow, "the node did not exit")
                #expect(exited(status) == 0, "killed by \(killedBy(status).map(signalName) ?? "?")")
                node.markReaped(status)
            }
        }

        /// 100,000 stray signals whose default action is to terminate (SIGPIPE,
        /// SIGIO) or to be ignored (SIGCHLD, SIGWINCH): the node counts them and
        /// still shuts down cleanly on SIGTERM.
        @Test(arguments: LoopBackendKind.allCases)
        func strayMixedSignalStormIsSurvived(kind: LoopBackendKind) throws {
            let node = try ChildProcess(["serve", "--backend", kind.rawValue])
            _ = try #require(node.line(startingWith: "serving"))
            // ThreadSanitizer treats SIGPIPE as synchronous and runs the handler at once,
            // even inside its own runtime, where the handler's first atomic deadlocks it: a
            // kill()-sent SIGPIPE storm cannot run under TSan (a real SIGPIPE comes from a
            // write, outside the runtime). scripts/sanitize sets TSAN_OPTIONS.
            let underThreadSanitizer = getenv("TSAN_OPTIONS") != nil
            let storm: [Int32] = (underThreadSanitizer ? [] : [SIGPIPE]) + [SIGCHLD, SIGIO, SIGWINCH]
            for i in 0..<100_000 {
                guard kill(node.pid, storm[i % storm.count]) == 0 else { break }
            }
            usleep(100_000)
            kill(node.pid, SIGTERM)
            let counters = try #require(node.line(startingWith: "loop:"), "the node died in the storm")
            let status = try #require(node.waitForExit())
            #expect(exited(status) == 0)
            let sigios = counters.split(separator: " ").first { $0.hasPrefix("sigios=") }.flatMap {
                Int($0.dropFirst(7))
            }
            #expect((sigios ?? 0) >= 1, "\(counters)")
        }

        /// A legacy loop off the main thread: refused while the main thread would take
        /// its SIGALRMs; with the process prepared, the main thread's sleeps are not
        /// interrupted on either backend; accepted unrouted, they are (what the refusal prevents).
        @Test(arguments: LoopBackendKind.allCases)
        func timerSignalsOfALoopOffTheMainThread(kind: LoopBackendKind) throws {
            func probe(_ flags: [String]) throws -> String {
                let child = try ChildProcess(
                    ["timer-routing", "--backend", kind.rawValue] + flags, executable: ChildProcess.probePath)
                defer { child.waitForExit() }
                return child.line(startingWith: "")
                    ?? "(no output; status \(child.waitForExit().map(String.init) ?? "none"))"
            }
            func eintr(_ flags: [String]) throws -> Int? {
                let child = try ChildProcess(
                    ["timer-routing", "--backend", kind.rawValue] + flags, executable: ChildProcess.probePath)
                defer { child.waitForExit() }
                return child.line(startingWith: "eintr").flatMap { Int($0.split(separator: " ")[1]) }
            }
            if kind == .legacy {
                let refusal = try probe([])
                #expect(refusal.contains("ProcessSignals.prepare"), "\(refusal)")
                #expect((try eintr(["--accept-unrouted"]) ?? 0) > 50)
            } else {
                #expect(try eintr([]) == 0)
            }
            #expect(try eintr(["--prepared"]) == 0)
        }

        /// fork() beside a loop with running workers: the child is refused the loop,
        /// closes it at once, starts with the admin signals unblocked and can make a
        /// loop of its own; the parent keeps every completion.
        @Test(arguments: LoopBackendKind.allCases)
        func forkedChildIsRefusedTheParentsLoop(kind: LoopBackendKind) throws {
            let child = try ChildProcess(
                ["fork-check", "--backend", kind.rawValue], executable: ChildProcess.probePath)
            let report = try #require(child.line(startingWith: "fork-check"))
            #expect(report == "fork-check child-exit=0 completions=50/50")
            let status = try #require(child.waitForExit())
            #expect(exited(status) == 0)
        }
    }
}
