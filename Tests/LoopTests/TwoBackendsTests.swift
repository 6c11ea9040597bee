import Compat
import Glibc
import LoopTools
import TestSupport
import Testing

extension LoopConformance {
    /// An epoll and a legacy loop in one process (as `compare` and the tests have
    /// them), one taking the admin signals and the other made with
    /// `handlesAdminSignals = false`: whichever is made first and whichever is
    /// closed first, a SIGTERM to the process reaches the admin loop as a shutdown
    /// and never kills the process. In child processes (`loop-probe two-loops`):
    /// the signal is process-directed and a wrong disposition would kill the runner.
    @Suite struct TwoBackends {
        @Test(arguments: LoopBackendKind.allCases)
        func sigtermReachesTheAdminLoopWhicheverCloses(admin: LoopBackendKind) throws {
            for order in ["epoll-legacy", "legacy-epoll"] {
                for close in ["older", "newer"] {
                    for prepare in ["none", admin.rawValue] {
                        let scenario = "--admin \(admin) --order \(order) --close \(close) --prepare \(prepare)"
                        let child = try ChildProcess(
                            [
                                "two-loops", "--admin", admin.rawValue, "--order", order,
                                "--close", close, "--prepare", prepare,
                            ],
                            executable: ChildProcess.probePath)
                        #expect(child.line(startingWith: "shutdown") == "shutdown \(SIGTERM)", "\(scenario)")
                        let status = try #require(child.waitForExit(), "\(scenario): hung")
                        #expect(exited(status) == 0, "\(scenario): status \(status)")
                    }
                }
            }
        }

        /// The same with the SIGTERM sent from outside while the surviving admin loop
        /// waits in `run()` (a signal that arrives mid-wait, not at a `kill` of its own).
        @Test(arguments: LoopBackendKind.allCases)
        func externalSigtermReachesTheSurvivingAdminLoop(admin: LoopBackendKind) throws {
            let other: LoopBackendKind = admin == .epoll ? .legacy : .epoll
            for order in ["\(other)-\(admin)", "\(admin)-\(other)"] {
                // The other loop closes first, so the admin loop is the survivor.
                let close = order.hasPrefix(admin.rawValue) ? "newer" : "older"
                let scenario = "--admin \(admin) --order \(order) --close \(close)"
                let child = try ChildProcess(
                    [
                        "two-loops", "--admin", admin.rawValue, "--order", order, "--close", close,
                        "--external",
                    ], executable: ChildProcess.probePath)
                _ = try #require(child.line(startingWith: "ready"), "\(scenario)")
                kill(child.pid, SIGTERM)
                #expect(child.line(startingWith: "shutdown") == "shutdown \(SIGTERM)", "\(scenario)")
                let status = try #require(child.waitForExit(), "\(scenario): hung")
                #expect(exited(status) == 0, "\(scenario): status \(status)")
            }
        }
    }
}
