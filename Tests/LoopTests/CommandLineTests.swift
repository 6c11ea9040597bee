import Compat
import Glibc
import LoopTools
import TestSupport
import Testing
import UdpServer

extension LoopConformance {
    /// `loop-harness` as a person or a script meets it: strict options with
    /// one-line errors (exit 2), help and version, JSON output and errors, a client
    /// that says when no node is there, and counters grouped for reading.
    @Suite struct HarnessCommandLine {
        /// Each of these crashed (integer conversion traps), ran with the option
        /// ignored, or started a node that never stops: now one line naming the
        /// option and what it takes, and exit 2.
        @Test(arguments: LoopBackendKind.allCases)
        func badArgumentsAreOneLineUsageErrors(kind: LoopBackendKind) throws {
            let to = ["--to", "127.0.0.1:9"]
            let cases: [(arguments: [String], says: [String])] = [
                (["serve", "--port", "70000"], ["--port", "0…65535", "70000"]),
                (["serve", "--port", "-1"], ["--port", "0…65535", "-1"]),
                (["run", "--port", "65536"], ["--port", "0…65535"]),
                (["ping", "--size", "-1"] + to, ["--size", "0…\(DatagramGeometry.defaultMaxMessageSize)"]),
                (["ping", "--timeout-ms", "9223372036854775807"] + to, ["--timeout-ms", "1…86400000"]),
                (["ping", "--count", "0"] + to, ["--count", "1…"]),
                (["ping", "--concurrency", "0"] + to, ["--concurrency", "1…"]),
                (["ping", "--count", "many"] + to, ["--count", "'many'"]),
                (["serve", "--seconds", "9223372036854775807"], ["--seconds", "0…31536000"]),
                (["run", "--seconds", "-5"], ["--seconds", "0…31536000"]),
                (["demo", "--bogus"], ["unknown option --bogus"]),
                (["serve", "--port"], ["--port needs a value", "0…65535"]),
                (["serve", "--port", "--seconds", "1"], ["--port needs a value"]),
                (["serve", "stray"], ["unexpected argument 'stray'"]),
                (["serve", "--port", "1", "--port", "2"], ["--port is given twice"]),
                (["serve", "--bind", "1.2.3.256"], ["--bind", "IPv4"]),
                (["serve", "--trust", "10.0.0.0/33"], ["--trust", "0…32"]),
                (["serve", "--trust", "10.0.0.0/8,"], ["--trust", "empty entry"]),
                (["stats"], ["--to IP:PORT is required"]),
                (["shutdown", "--to", "localhost:7000"], ["--to", "localhost:7000"]),
                (["stats", "--timeout-ms", "0"] + to, ["--timeout-ms", "1…86400000"]),
                (["demo", "--datagram-size", "70000"], ["--datagram-size", "13…65507"]),
                (["fuzz", "--steps", "0"], ["--steps", "1…400"]),
                (["compare", "--tolerance-scale", "-1"], ["--tolerance-scale"]),
                // Numbers are plain digits: no sign Int(_:) or Double(_:) would take, no exponent.
                (["ping", "--count", "+5"] + to, ["--count", "'+5'"]),
                (["fetch", "--deadline-ms", "+5", "http://127.0.0.1:1/"], ["--deadline-ms", "'+5'"]),
                (["compare", "--tolerance-scale", "+1"], ["--tolerance-scale", "'+1'"]),
                (["compare", "--tolerance-scale", "1e3"], ["--tolerance-scale", "'1e3'"]),
                (["compare", "--tolerance-scale", "nan"], ["--tolerance-scale", "'nan'"]),
            ]
            let probeCases: [(arguments: [String], says: [String])] = [
                (["child-loop", "--seconds", "1"], ["unknown option --seconds"]),
                (["fork-check", "stray"], ["unexpected argument 'stray'"]),
                (["fuzz-process"], ["--script TEXT is required"]),
                (["timer-routing", "--datagram-size", "100"], ["unknown option --datagram-size"]),
            ]
            for (program, cases) in [("loop-harness", cases), ("loop-probe", probeCases)] {
                for c in cases {
                    let run = try HarnessRun(
                        c.arguments + ["--backend", kind.rawValue], program: ChildProcess.siblingPath(program),
                        timeoutMs: 20_000)
                    #expect(
                        run.exitCode == 2,
                        "\(c.arguments): exit \(run.exitCode.map(String.init) ?? "none"): \(run.output)")
                    #expect(run.lines.count == 1, "\(c.arguments): \(run.output)")
                    for text in c.says {
                        #expect(run.output.contains(text), "\(c.arguments) should say \(text): \(run.output)")
                    }
                    #expect(run.output.hasPrefix("\(program) \(c.arguments[0]): "), "\(run.output)")
                }
            }
        }

        /// The probes are not the harness's commands: the harness refuses them, the probe
        /// answers them, and the probe has no commands but its own.
        @Test(arguments: LoopBackendKind.allCases)
        func probesLiveInTheirOwnExecutable(kind: LoopBackendKind) throws {
            for probe in ["fuzz-process", "child-loop", "timer-routing", "fork-check"] {
                let harness = try HarnessRun([probe, "--backend", kind.rawValue], timeoutMs: 20_000)
                #expect(
                    harness.exitCode == 2 && harness.output.contains("unknown command '\(probe)'"), "\(harness.output)")
            }
            let serve = try HarnessRun(
                ["serve", "--backend", kind.rawValue], program: ChildProcess.probePath, timeoutMs: 20_000)
            #expect(
                serve.exitCode == 2 && serve.output.contains("loop-probe: unknown command 'serve'"), "\(serve.output)")
            let help = try HarnessRun(["help"], program: ChildProcess.probePath, timeoutMs: 20_000)
            #expect(help.exitCode == 0 && help.output.hasPrefix("usage: loop-probe"), "\(help.output)")
        }

        /// `loop-bench` parses as strictly as the harness: a typo, a stray word, a missing
        /// value or one out of range is one line naming the option, exit 2, and nothing runs
        /// (each of these ran a server for its --seconds with the typo ignored).
        @Test(arguments: LoopBackendKind.allCases)
        func benchRefusesTypos(kind: LoopBackendKind) throws {
            let cases: [(arguments: [String], says: [String])] = [
                (["echo-server", "--seconds", "1", "--prot", "0"], ["unknown option --prot"]),
                (["rpc-server", "--seconds", "1", "--datagrams-per-cal", "4"], ["unknown option --datagrams-per-cal"]),
                (["echo-server", "--seconds", "1", "stray"], ["unexpected argument 'stray'"]),
                (["echo-server", "--seconds", "1", "--port"], ["--port needs a value", "0…65535"]),
                (["rpc-server", "--seconds", "1", "--port", "70000"], ["--port", "0…65535", "70000"]),
                (["echo-server", "--seconds", "1", "--seconds", "2"], ["--seconds is given twice"]),
            ]
            for c in cases {
                let run = try HarnessRun(
                    c.arguments + ["--backend", kind.rawValue], program: ChildProcess.siblingPath("loop-bench"),
                    timeoutMs: 20_000)
                #expect(
                    run.exitCode == 2, "\(c.arguments): exit \(run.exitCode.map(String.init) ?? "none"): \(run.output)")
                #expect(run.lines.count == 1, "\(c.arguments): \(run.output)")
                for text in c.says {
                    #expect(run.output.contains(text), "\(c.arguments) should say \(text): \(run.output)")
                }
                #expect(run.output.hasPrefix("loop-bench \(c.arguments[0]): "), "\(run.output)")
            }
        }

        /// Nothing, or an unknown command, is a usage error; `help`, `--version` and a
        /// command's `--help` print and exit 0 (none of them starts a node).
        @Test(arguments: LoopBackendKind.allCases)
        func helpVersionAndNoArguments(kind: LoopBackendKind) throws {
            let nothing = try HarnessRun([], timeoutMs: 20_000)
            #expect(nothing.exitCode == 2, "\(nothing.output)")
            #expect(nothing.output.hasPrefix("usage: loop-harness"), "\(nothing.output)")

            let version = try HarnessRun(["--version"], timeoutMs: 20_000)
            #expect(version.exitCode == 0, "\(version.output)")
            #expect(version.lines.count == 1 && version.output.hasPrefix("loop-harness "), "\(version.output)")

            let help = try HarnessRun(["help"], timeoutMs: 20_000)
            #expect(help.exitCode == 0, "\(help.output)")
            #expect(help.output.hasPrefix("usage: loop-harness"), "\(help.output)")
            #expect(help.output.contains("serve") && help.output.contains("run"))

            let ping = try HarnessRun(["ping", "--backend", kind.rawValue, "--help"], timeoutMs: 20_000)
            #expect(ping.exitCode == 0, "\(ping.output)")
            #expect(ping.output.hasPrefix("usage: loop-harness ping --to IP:PORT"), "\(ping.output)")
            for option in ["--count", "--size", "--concurrency", "--timeout-ms", "1…86400000", "--backend", "--json"] {
                #expect(ping.output.contains(option), "ping --help lacks \(option)")
            }
            let serve = try HarnessRun(["help", "serve"], timeoutMs: 20_000)
            #expect(serve.exitCode == 0, "\(serve.output)")
            for text in ["--bind", "--trust", "--save", "keeps serving", "anyone who can reach"] {
                #expect(serve.output.contains(text), "serve --help lacks \(text)")
            }
            let unknown = try HarnessRun(["frobnicate", "--backend", kind.rawValue], timeoutMs: 20_000)
            #expect(unknown.exitCode == 2 && unknown.lines.count == 1, "\(unknown.output)")
            #expect(unknown.output.contains("unknown command 'frobnicate'"), "\(unknown.output)")
        }

        /// Every invocation the tests and scripts/ make of the harness still parses
        /// (checked with --help appended, so that nothing runs).
        @Test(arguments: LoopBackendKind.allCases)
        func invocationsOfTheScriptsAndTestsStillParse(kind: LoopBackendKind) throws {
            let invocations: [[String]] = [
                ["serve", "--port", "0"], ["serve", "--seconds", "1"], ["serve"],
                ["ping", "--to", "127.0.0.1:7000", "--count", "200", "--size", "40000", "--concurrency", "8"],
                ["ping", "--count", "200", "--size", "512", "--concurrency", "4", "--to", "127.0.0.1:7000"],
                ["stats", "--to", "127.0.0.1:7000"], ["shutdown", "--to", "127.0.0.1:7000"],
                ["compare", "--quick", "--only", "readiness,sleep,wakeup"],
                ["compare", "--quick", "--only", "sleep", "--tolerance-scale", "0"],
                ["compare", "--quick", "--only", "readiness", "--json"], ["compare", "--quick"],
                ["fuzz", "--scripts", "300", "--seed", "5", "--process-scripts", "10"],
                ["fuzz", "--scripts", "300", "--seed", "5", "--process-scripts", "0", "--rules", "original"],
                ["fuzz", "--scripts", "20", "--process-scripts", "0", "--json"],
                ["fuzz", "--scripts", "100000", "--seed", "1"], ["fuzz", "--scripts", "2000", "--seed", "11"],
                ["fuzz", "--rules", "original", "--show", "1"], ["fuzz", "--scripts", "10000", "--seed", "7"],
                ["demo"], ["run", "--port", "0", "--seconds", "1"],
            ]
            let probeInvocations: [[String]] = [
                ["fuzz-process", "--script", "signal TERM 1\nonce"],
                ["child-loop"], ["child-loop", "--unblocked-thread"],
                ["timer-routing"], ["timer-routing", "--prepared"], ["timer-routing", "--accept-unrouted"],
                ["fork-check"],
            ]
            for (program, invocations) in [("loop-harness", invocations), ("loop-probe", probeInvocations)] {
                for arguments in invocations {
                    let run = try HarnessRun(
                        arguments + ["--backend", kind.rawValue, "--help"],
                        program: ChildProcess.siblingPath(program), timeoutMs: 20_000)
                    #expect(run.exitCode == 0, "\(arguments): \(run.output)")
                    #expect(run.output.hasPrefix("usage: \(program) \(arguments[0])"), "\(arguments): \(run.output)")
                }
            }
        }

        /// With --json, a usage error is one JSON object on stdout (exit 2) and a failure
        /// one too (exit 1).
        @Test(arguments: LoopBackendKind.allCases)
        func errorsAreJSONWithJSON(kind: LoopBackendKind) throws {
            let usage = try HarnessRun(
                ["serve", "--port", "70000", "--json", "--backend", kind.rawValue], timeoutMs: 20_000)
            #expect(usage.exitCode == 2, "\(usage.output)")
            #expect(usage.lines.count == 1, "\(usage.output)")
            #expect(
                usage.output.hasPrefix("{\"ok\":false,\"error\":\"") && usage.output.hasSuffix("}"), "\(usage.output)")
            #expect(usage.output.contains("--port"))

            let silent = try LoopbackSocket()
            let failure = try HarnessRun(
                [
                    "stats", "--backend", kind.rawValue, "--json", "--timeout-ms", "300",
                    "--to", "127.0.0.1:\(silent.port)",
                ], timeoutMs: 30_000)
            #expect(failure.exitCode == 1, "\(failure.output)")
            #expect(failure.lines.count == 1, "\(failure.output)")
            #expect(
                failure.output.hasPrefix("{\"ok\":false,\"error\":\"no node answered at 127.0.0.1:\(silent.port)"),
                "\(failure.output)")
        }

        /// --json on the commands that had none: every line of output is one JSON object.
        @Test(arguments: LoopBackendKind.allCases)
        func everyCommandSpeaksJSON(kind: LoopBackendKind) throws {
            let commands: [(program: String, arguments: [String])] = [
                (ChildProcess.harnessPath, ["run", "--seconds", "1"]), (ChildProcess.probePath, ["fork-check"]),
                (ChildProcess.probePath, ["timer-routing", "--prepared"]),
                (ChildProcess.harnessPath, ["fuzz", "--print", "--scripts", "2", "--process-scripts", "1"]),
                (ChildProcess.probePath, ["fuzz-process", "--script", "once"]),
            ]
            for (program, command) in commands {
                let run = try HarnessRun(
                    command + ["--backend", kind.rawValue, "--json"], program: program, timeoutMs: 30_000)
                #expect(run.exitCode == 0, "\(command): \(run.output)")
                #expect(
                    !run.lines.isEmpty && run.lines.allSatisfy { $0.hasPrefix("{") && $0.hasSuffix("}") },
                    "\(command): \(run.output)")
            }
        }

        /// A client with no node to talk to says so, after its own --timeout-ms, for
        /// stats, shutdown and ping alike.
        @Test(arguments: LoopBackendKind.allCases)
        func clientsSayWhenNoNodeAnswers(kind: LoopBackendKind) throws {
            let silent = try LoopbackSocket()
            let address = "127.0.0.1:\(silent.port)"
            for command in [["stats"], ["shutdown"], ["ping", "--count", "2", "--concurrency", "2"]] {
                let run = try HarnessRun(
                    command + ["--backend", kind.rawValue, "--timeout-ms", "300", "--to", address],
                    timeoutMs: 30_000)
                #expect(run.exitCode == 1, "\(command): \(run.output)")
                #expect(
                    run.output.contains("no node answered at \(address) (is `serve` running?)"),
                    "\(command): \(run.output)")
            }
        }

        /// The node's output for a person: the start-up line says what to run next, and
        /// the counters on exit are a few short labelled lines (the full set is in --json);
        /// its JSON figures are numbers.
        @Test(arguments: LoopBackendKind.allCases)
        func nodeOutputIsGroupedAndItsJSONHasNumbers(kind: LoopBackendKind) throws {
            let node = try ServedNode(["--backend", kind.rawValue, "--seconds", "2"])
            #expect(
                node.line(startingWith: "try:")?.contains("loop-harness ping --to \(node.address)") == true,
                "\(node.seen)")
            let ping = try HarnessRun([
                "ping", "--backend", kind.rawValue, "--to", node.address, "--count", "20", "--json",
            ])
            #expect(ping.exitCode == 0, "\(ping.output)")
            #expect(jsonInt(ping.output, "sent") == 20 && jsonInt(ping.output, "replies") == 20, "\(ping.output)")
            #expect(node.finish() == 0)
            let tail = Array(node.seen.drop { !$0.hasPrefix("stopped:") })
            for label in ["loop:", "traffic:", "transactions:", "drops:", "admin:"] {
                #expect(tail.contains { $0.hasPrefix(label) }, "no \(label) line: \(tail)")
            }
            #expect(tail.allSatisfy { $0.count <= 160 }, "\(tail)")
            #expect(tail.contains { $0.hasPrefix("transactions:") && $0.contains("20 requests handled") }, "\(tail)")

            let json = try ServedNode(["--backend", kind.rawValue, "--seconds", "1", "--json"])
            #expect(json.finish() == 0)
            let serving = try #require(json.seen.first { $0.hasPrefix("{\"event\":\"serving\"") })
            #expect(jsonInt(serving, "port") == Int(json.port) && jsonInt(serving, "pid") != nil, "\(serving)")
            let stopped = try #require(json.seen.first { $0.hasPrefix("{\"event\":\"stopped\"") }, "\(json.seen)")
            for key in ["datagramsIn", "polls", "adminRefused", "savesFailed"] {
                #expect(jsonInt(stopped, key) != nil, "\(key) is not a number: \(stopped)")
            }
        }

        /// The demo's counters grouped, with a line on what to try next; its JSON steps
        /// carry figures as numbers.
        @Test(arguments: LoopBackendKind.allCases)
        func demoOutputIsGrouped(kind: LoopBackendKind) throws {
            let demo = try HarnessRun(["demo", "--backend", kind.rawValue], timeoutMs: 60_000)
            #expect(demo.exitCode == 0, "\(demo.output)")
            for label in ["loop:", "traffic:", "transactions:", "drops:"] {
                #expect(
                    demo.lines.contains { $0.drop { $0 == " " }.hasPrefix(label) }, "no \(label) line: \(demo.output)")
            }
            #expect(demo.lines.allSatisfy { $0.count <= 160 }, "\(demo.output)")
            #expect(
                demo.lines.contains { $0.hasPrefix("next:") && $0.contains("loop-harness serve") }, "\(demo.output)")

            let json = try HarnessRun(["demo", "--backend", kind.rawValue, "--json"], timeoutMs: 60_000)
            #expect(json.exitCode == 0, "\(json.output)")
            #expect(json.lines.count == 1, "\(json.output)")
            #expect(jsonInt(json.output, "replies") == 500, "\(json.output)")
            #expect(jsonInt(json.output, "datagramsIn") != nil, "\(json.output)")
        }
    }
}
