import Compat
import Glibc
import LoopTools
import TestSupport
import Testing

extension LoopConformance {
    /// What `-DLEGACY_LOOP` changes, and nothing else: the backend a plain `Loop.make()`
    /// and the harness's commands use. Every other test names its backend and runs on
    /// both in one binary, so the legacy flavour runs only this suite (`scripts/test`).
    @Suite struct BuildFlavour {
        /// The backend this binary was built to use by default.
        static var expected: LoopBackendKind {
            #if LEGACY_LOOP
                return .legacy
            #else
                return .epoll
            #endif
        }

        @Test func buildFlagPicksTheDefaultBackend() throws {
            #expect(LoopBackendKind.buildDefault == Self.expected)
            let loop = try Loop.make(configuration: .unroutedTimerSignalsAccepted)
            defer { try? loop.close() }
            #expect(loop.kind == Self.expected)
        }

        /// The main job, `loop-harness demo`, on the build's backend: every step passes.
        @Test func theDemoRunsOnTheBuildsBackend() throws {
            let demo = try HarnessRun(["demo", "--json"], environment: "unset LOOP_BACKEND; ", timeoutMs: 60_000)
            #expect(demo.exitCode == 0, "\(demo.output)")
            #expect(demo.output.hasPrefix("{\"backend\":\"\(Self.expected.rawValue)\",\"ok\":true,"), "\(demo.output)")
        }

        /// `LOOP_BACKEND` names the other backend at run time, whatever the build chose.
        @Test func theEnvironmentOverridesTheBuild() throws {
            let other: LoopBackendKind = Self.expected == .epoll ? .legacy : .epoll
            let demo = try HarnessRun(
                ["demo", "--json"], environment: "export LOOP_BACKEND=\(other.rawValue); ",
                timeoutMs: 60_000)
            #expect(demo.exitCode == 0, "\(demo.output)")
            #expect(demo.output.hasPrefix("{\"backend\":\"\(other.rawValue)\",\"ok\":true,"), "\(demo.output)")
            let wrong = try HarnessRun(["demo"], environment: "export LOOP_BACKEND=kqueue; ", timeoutMs: 20_000)
            #expect(wrong.exitCode == 2, "\(wrong.output)")
            #expect(wrong.output.contains("LOOP_BACKEND=kqueue is not a backend"), "\(wrong.output)")
        }
    }
}
