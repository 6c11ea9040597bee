import Compat
import Glibc
import LoopTools
import TestSupport
import Testing

extension LoopConformance {
    /// `run --seconds` and `serve --seconds` end on a one-shot timer, not a 100 ms
    /// poll of the clock: an idle node wakes for its heartbeat and its deadline only.
    @Suite struct CommandDeadlines {
        /// Counted from the `--json` report: the sleep callbacks are the heartbeats
        /// alone (two in 2 s, twenty more with the 100 ms check), one timer ends it,
        /// and the tickless epoll loop polls a handful of times, not 10+ a second.
        @Test(arguments: LoopBackendKind.allCases)
        func idleRunForSecondsWakesOnlyForItsDeadlines(kind: LoopBackendKind) throws {
            let started = monotonicNanoseconds()
            let run = try HarnessRun(["run", "--backend", kind.rawValue, "--seconds", "2", "--json"])
            let elapsed = elapsedMs(since: started)
            #expect(run.exitCode == 0, "\(run.output)")
            let stopped = try #require(run.lines.first { $0.contains("\"event\":\"stopped\"") }, "\(run.output)")
            let sleeps = try #require(jsonInt(stopped, "sleepCallbacks"))
            let timers = try #require(jsonInt(stopped, "timerCallbacks"), "\(stopped)")
            let polls = try #require(jsonInt(stopped, "polls"))
            #expect(sleeps <= 3, "\(sleeps) sleep callbacks in an idle 2 s run")
            #expect(timers == 1)
            if kind == .epoll { #expect(polls <= 8, "\(polls) polls in an idle 2 s run") }
            #expect(elapsed >= 2_000, "stopped after \(elapsed) ms")
        }

        @Test(arguments: LoopBackendKind.allCases)
        func idleServeForSecondsWakesOnlyForItsDeadlines(kind: LoopBackendKind) throws {
            let node = try ServedNode(["--backend", kind.rawValue, "--seconds", "2", "--port", "0", "--json"])
            let stopped = try #require(node.line(startingWith: "{\"event\":\"stopped\""), "\(node.seen)")
            #expect(node.finish() == 0)
            let sleeps = try #require(jsonInt(stopped, "sleepCallbacks"), "\(stopped)")
            #expect(jsonInt(stopped, "timerCallbacks") == 1, "\(stopped)")
            // The heartbeat and the node's own periodic work, not a 100 ms deadline check (20 more).
            #expect(sleeps <= 5, "\(sleeps) sleep callbacks in an idle 2 s serve")
        }
    }
}
