import CommandLineOptions
import Compat
import Glibc
import LoopScript
import LoopTools

/// `loop-harness fuzz`: random scripts on epoll, legacy and the reference model,
/// compared callback for callback; each kind of divergence shrunk to a minimal script.
let fuzzOptions = CommandOptions(
    command: "fuzz",
    summary: "Random loop programs on epoll, legacy and the reference model, compared callback for callback; "
        + "every kind of divergence shrunk to a minimal script. Exits 1 on any divergence.",
    options: [
        .integer("--scripts", 1...10_000_000, default: 1_000, "in-process scripts to run"),
        .integer(
            "--process-scripts", -1...1_000_000, default: -1,
            "process-level scripts, each in a process of its own per backend; -1: max(10, scripts / 200)"),
        .integer("--seed", 0...Int.max, default: 1, "the run's seed"),
        .integer("--steps", 1...400, default: 24, "steps per script"),
        .integer("--show", 0...100, default: 3, "divergences shrunk and shown per kind"),
        // Bounded so that from + scripts cannot overflow.
        .integer("--from", 0...1_000_000_000_000, default: 0, "start at script I (reruns one script of a long run)"),
        .flag("--print", "print the scripts instead of running them"),
        .choice("--rules", ["port", "original"], default: "port", "the model's rules"),
        .flag("--raw", "compare raw traces (no normalization of declared differences)"),
    ])

func runFuzz(_ args: Arguments) throws -> Int32 {
    let options = try args.parse(fuzzOptions)
    let scripts = options.int("--scripts")
    let processScripts =
        options.int("--process-scripts") < 0 ? max(10, scripts / 200) : options.int("--process-scripts")
    let seed = options.int("--seed")
    let steps = options.int("--steps")
    let shown = options.int("--show")
    let from = options.int("--from")
    let rules: ModelRules = options.string("--rules") == "original" ? .original : .port
    let json = options.json
    let printOnly = options.flag("--print")
    let differ = Differ(rules: rules, normalizes: !options.flag("--raw"))

    let start = monotonicNanoseconds()
    var tally = FuzzTally(differ: differ, shown: shown)
    // In-process programs, then process-level ones (each in a process of its own per backend).
    for index in from..<(from + scripts) {
        var generator = ScriptGenerator(seed: scriptSeed(UInt64(seed), index))
        let script = generator.script(steps: steps)
        if printOnly {
            printScript(script, index: index, processLevel: false, json: json)
            continue
        }
        if !json && index > from && (index - from) % 10_000 == 0 { sayError("fuzz: \(index - from) scripts …") }
        try tally.record(script, index: index, processLevel: false)
    }
    for index in from..<(from + processScripts) {
        var generator = ScriptGenerator(seed: scriptSeed(UInt64(seed) ^ 0x5052_4F43, index))
        let script = generator.processScript(steps: 10)
        if printOnly {
            printScript(script, index: index, processLevel: true, json: json)
            continue
        }
        try tally.record(script, index: index, processLevel: true)
    }
    if printOnly { return 0 }
    let seconds = Double(monotonicNanoseconds() - start) / 1e9
    let divergent = tally.counts.values.reduce(0, +) + tally.processCounts.values.reduce(0, +)

    if json {
        say(
            JSON.object([
                ("scripts", .int(scripts)), ("processScripts", .int(processScripts)),
                ("seed", .int(seed)), ("steps", .int(steps)),
                ("rules", .string(rules.description)), ("normalized", .bool(differ.normalizes)),
                ("seconds", .number(seconds)),
                ("divergent", .int(divergent)),
                ("byKind", .object(DivergenceKind.allCases.map { ($0.rawValue, .int(tally.counts[$0] ?? 0)) })),
                (
                    "processByKind",
                    .object(DivergenceKind.allCases.map { ($0.rawValue, .int(tally.processCounts[$0] ?? 0)) })
                ),
                (
                    "reproductions",
                    .array(
                        tally.reproductions.map { r in
                            .object([
                                ("index", .int(r.index)), ("processLevel", .bool(r.processLevel)),
                                ("kind", .string(r.run.divergence?.rawValue ?? "")),
                                ("script", .string(r.run.script.description)),
                                ("epoll", .string(r.run.epoll.description)),
                                ("legacy", .string(r.run.legacy.description)),
                                ("model", .string(r.run.model.description)),
                            ])
                        })
                ),
            ]).description)
    } else {
        say(
            "fuzz: \(scripts) scripts of \(steps) steps and \(processScripts) process-level scripts, seed \(seed),\n"
                + "model rules \(rules), " + (differ.normalizes ? "declared differences normalized" : "raw traces"))
        say("kind                     in-process  process-level")
        say("------------------------------------------------")
        for kind in DivergenceKind.allCases {
            say(
                kind.rawValue.padded(to: 24)
                    + String(tally.counts[kind] ?? 0).leftPadded(to: 11)
                    + String(tally.processCounts[kind] ?? 0).leftPadded(to: 15))
        }
        say("divergent                \(divergent) of \(scripts + processScripts)  (\(format(seconds, 1)) s)")
        for r in tally.reproductions {
            say(
                "\n\(r.run.divergence?.rawValue ?? "?"): \(r.processLevel ? "process script" : "script") \(r.index) "
                    + "(\(r.originalSize) steps) shrunk to \(r.run.script.size):")
            say(r.run.script.description.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
            say(r.run.sideBySide)
        }
    }
    return divergent == 0 ? 0 : 1
}

/// `fuzz --print`: a script as text after a `#` line naming it, or one JSON object.
private func printScript(_ script: Script, index: Int, processLevel: Bool, json: Bool) {
    if json {
        say(
            JSON.object([
                ("index", .int(index)), ("processLevel", .bool(processLevel)),
                ("script", .string(script.description)),
            ]).description)
    } else {
        say("# \(processLevel ? "process script" : "script") \(index)\n\(script)")
    }
}

/// Divergences by kind, and the first `shown` of each kind shrunk.
struct FuzzTally {
    let differ: Differ
    let shown: Int
    var counts: [DivergenceKind: Int] = [:]
    var processCounts: [DivergenceKind: Int] = [:]
    var reproductions: [(index: Int, processLevel: Bool, originalSize: Int, run: DifferentialRun)] = []
    private var shrunkPerKind: [DivergenceKind: Int] = [:]

    init(differ: Differ, shown: Int) {
        self.differ = differ
        self.shown = shown
    }

    mutating func record(_ script: Script, index: Int, processLevel: Bool) throws {
        let run = try differ.run(script)
        guard let kind = run.divergence else { return }
        if processLevel { processCounts[kind, default: 0] += 1 } else { counts[kind, default: 0] += 1 }
        guard shrunkPerKind[kind, default: 0] < shown else { return }
        shrunkPerKind[kind, default: 0] += 1
        reproductions.append((index, processLevel, script.size, try differ.shrink(run)))
    }
}

/// Script `index` of a run with `seed`: each script has its own generator, so
/// one can be regenerated without the ones before it.
func scriptSeed(_ seed: UInt64, _ index: Int) -> UInt64 {
    var mix = SplitMix64(seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(index))
    return mix.next()
}
