import Compat
import LoopScript
import LoopTools
import TestSupport
import Testing

extension LoopConformance {
    /// One-shot timers in the differential fuzzer's language: both loops and the
    /// reference model agree on when timers fire, in what order, and that a
    /// cancelled one never does.
    @Suite struct TimerScripts {
        let differ = Differ(configuration: .unroutedTimerSignalsAccepted)

        @Test func handWrittenTimerScriptAgreesAndFiresAsSpecified() throws {
            let script = try Script(
                parsing: """
                    after r1 30 n0 {}
                    after r2 10 n1 { after r3 0 n0 {} }
                    after r4 10 n0 o1 {}
                    after r5 5 n0 o1 {}
                    after r6 20 n2 {}
                    unreg r6
                    sleep r7 10 n0 { after r8 0 n0 {} }
                    clock +10
                    once
                    once
                    clock -5
                    clock +25
                    once
                    once
                    unreg r1
                    """)
            #expect(script.description.contains("after r2 10 n1 { after r3 0 n0 {} }"))
            #expect(try Script(parsing: script.description) == script)
            let run = try differ.run(script)
            #expect(run.divergence == nil, "\(run.sideBySide)")
            let fired = run.model.lines.filter { $0.contains(" timer ") }.map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            // At +10, all due at +10, in registration order: r2, r4 (r5 has r4's owner, so
            // it is r4), then r8, registered by the sleep callback in the same poll; r3,
            // registered by r2's callback, in the next poll. At +30 (after a step back),
            // r1 and the sleep callback's second r8; r6 was cancelled.
            #expect(
                fired == ["r2 timer n1", "r4 timer n0", "r8 timer n0", "r3 timer n0", "r1 timer n0", "r8 timer n0"],
                "\(run.model)")
        }

        /// Random scripts with timers (the generator's `after` steps), a fixed seed:
        /// no divergence, and timers do fire and get cancelled in them.
        @Test func randomTimerScriptsFindNoDivergence() throws {
            var divergent: [DifferentialRun] = []
            var fired = 0
            var scripted = 0
            for index in 0..<300 {
                var generator = ScriptGenerator(seed: 0x71AE_0000 + UInt64(index))
                let script = generator.script(steps: 24)
                scripted += script.description.components(separatedBy: "after r").count - 1
                let run = try differ.run(script)
                fired += run.model.lines.filter { $0.contains(" timer ") }.count
                if run.divergence != nil { divergent.append(try differ.shrink(run)) }
            }
            #expect(
                divergent.isEmpty,
                "\(divergent.count) divergent; first, shrunk:\n\(divergent.first.map { "\($0.script)\n\($0.sideBySide)" } ?? "")"
            )
            #expect(scripted >= 100 && fired >= 50, "\(scripted) timers scripted, \(fired) fired")
        }
    }
}
