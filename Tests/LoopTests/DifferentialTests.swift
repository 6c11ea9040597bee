import Compat
import Glibc
import LoopScript
import LoopTools
import TestSupport
import Testing

/// The differential harness in the suite: the corpus of minimal scripts, a quick
/// random pass, the script language's round trip, and a planted divergence the
/// differ must catch and shrink.
extension LoopConformance {
    @Suite struct Differential {
        let differ = Differ(configuration: .unroutedTimerSignalsAccepted)

        @Test func corpusAgreesOnBothBackendsAndTheModel() throws {
            let corpus = try DifferentialCorpus.load()
            #expect(corpus.count >= 15)
            for entry in corpus {
                let run = try differ.run(entry.script)
                #expect(
                    run.divergence == nil,
                    "\(entry.name): \(run.divergence?.rawValue ?? "")\n\(entry.script)\n\(run.sideBySide)")
                switch entry.expectation {
                case .agree:
                    break
                case .declared:
                    // The raw traces show the difference the normalization takes out.
                    #expect(
                        run.raw.divergence != nil, "\(entry.name): shows no declared difference\n\(run.raw.sideBySide)")
                    #expect(run.epoll.hasOrphanCalls || run.legacy.hasOrphanCalls)
                case .differsFromOriginal:
                    #expect(
                        ReferenceModel.predict(entry.script, rules: .original) != run.model,
                        "\(entry.name): the original's rules predict the same trace")
                }
            }
        }

        /// A few hundred random scripts with a fixed seed; `scripts/side-by-side` runs 100,000.
        @Test func quickRandomPassFindsNoDivergence() throws {
            var divergent: [DifferentialRun] = []
            for index in 0..<400 {
                var generator = ScriptGenerator(seed: 0x5EED_0000 + UInt64(index))
                let run = try differ.run(generator.script(steps: 24))
                if run.divergence != nil { divergent.append(try differ.shrink(run)) }
            }
            #expect(
                divergent.isEmpty,
                "\(divergent.count) divergent; first, shrunk:\n\(divergent.first.map { "\($0.script)\n\($0.sideBySide)" } ?? "")"
            )
        }

        /// Process-level programs (signals, storms, children, a second loop), each in
        /// a process of its own per backend.
        @Test func quickProcessPassFindsNoDivergence() throws {
            var divergent: [DifferentialRun] = []
            for index in 0..<40 {
                var generator = ScriptGenerator(seed: 0x9A0C_0000 + UInt64(index))
                let script = generator.processScript(steps: 10)
                #expect(script.isProcessLevel)
                let run = try differ.run(script)
                if run.divergence != nil { divergent.append(run) }
            }
            #expect(
                divergent.isEmpty,
                "\(divergent.count) divergent; first:\n\(divergent.first.map { "\($0.script)\n\($0.sideBySide)" } ?? "")"
            )
        }

        /// MIGRATION.md names, per inventory item, the model rule and the fixtures that
        /// exercise it: every fixture it names exists, and every fixture is named.
        @Test func migrationNamesEveryFixtureAndOnlyFixturesThatExist() throws {
            let corpus = Set(try DifferentialCorpus.load().map(\.name))
            let named = try DifferentialCorpus.fixturesNamedInMigration()
            #expect(!named.isEmpty)
            #expect(
                named.subtracting(corpus).isEmpty,
                "MIGRATION.md names fixtures that do not exist: \(named.subtracting(corpus).sorted())")
            #expect(
                corpus.subtracting(named).isEmpty,
                "fixtures MIGRATION.md does not name: \(corpus.subtracting(named).sorted())")
        }

        /// Forced failure: a model that dispatches in reverse order must be caught
        /// by random scripts and shrunk to a handful of steps.
        @Test func aPlantedDivergenceIsCaughtAndShrunk() throws {
            let planted = Differ(rules: ModelRules(order: .reversedList), configuration: .unroutedTimerSignalsAccepted)
            var found: DifferentialRun?
            for index in 0..<500 where found == nil {
                var generator = ScriptGenerator(seed: 0xBAD_0000 + UInt64(index))
                let run = try planted.run(generator.script(steps: 24))
                if run.divergence != nil { found = run }
            }
            let run = try #require(found, "500 random scripts never met two ready fds in one pass")
            #expect(run.divergence == .loopsVersusModel)
            let shrunk = try planted.shrink(run)
            #expect(shrunk.divergence == .loopsVersusModel)
            #expect(shrunk.script.size <= 8, "shrunk only to \(shrunk.script.size) steps:\n\(shrunk.script)")
            #expect(shrunk.script.size < run.script.size)
            // The same script agrees with the real rules: the divergence was the planted one.
            #expect(try differ.run(shrunk.script).divergence == nil)
        }

        @Test func scriptsPrintAndParseBack() throws {
            for index in 0..<200 {
                var generator = ScriptGenerator(seed: UInt64(index))
                let script = generator.script(steps: 30)
                #expect(try Script(parsing: script.description) == script)
            }
            let text =
                "pipe s0 s1 # a comment\nonread r0 s0 n1 o2 { drain s0; onwrite r1 s1 n0 { quickpoll } }\nclock -5\nonce"
            #expect(
                try Script(parsing: text).description
                    == "pipe s0 s1\nonread r0 s0 n1 o2 { drain s0; onwrite r1 s1 n0 { quickpoll } }\nclock -5\nonce")
        }

        @Test(arguments: [
            ("pipe s0", "line 1: expected a slot (sN)"),
            ("pipe s0 s16", "out of range"),
            ("onread r0 s0 n0 { once }", "not allowed inside a callback"),
            ("onread r0 s0 n0 { drain s0", "missing '}'"),
            ("}", "'}' without '{'"),
            ("frobnicate", "unknown step 'frobnicate'"),
            ("write s1 0", "byte count 0 out of range"),
            ("clock +x", "expected a clock step"),
        ])
        func malformedScriptsAreRefusedClearly(text: String, message: String) {
            #expect {
                try Script(parsing: text)
            } throws: { error in
                "\(error)".contains(message)
            }
        }
    }
}

/// The corpus file: `## name:` starts an entry, `## expect:` says what it shows.
struct DifferentialCorpus {
    enum Expectation: String {
        case agree, declared
        case differsFromOriginal = "differs-from-original"
    }
    struct Entry {
        let name: String
        let expectation: Expectation
        let script: Script
    }

    static var path: String {
        let here = "\(#filePath)"
        return String(here[..<here.lastIndex(of: "/")!]) + "/Fixtures/differential-corpus.txt"
    }

    static func read(_ path: String) throws -> String {
        guard let text = readTextFile(path) else { throw ScriptHarnessError("cannot open \(path)") }
        return text
    }

    /// The names after `Fixtures:` in MIGRATION.md (in backquotes, to the end of the line).
    static func fixturesNamedInMigration() throws -> Set<String> {
        let here = "\(#filePath)"
        var root = here[..<here.lastIndex(of: "/")!] // Tests/LoopTests
        root = root[..<root.lastIndex(of: "/")!] // Tests
        root = root[..<root.lastIndex(of: "/")!] // the package
        let text = try read(root + "/MIGRATION.md")
        var names: Set<String> = []
        for line in text.split(separator: "\n") {
            guard let start = line.firstRange(of: "Fixtures:")?.upperBound else { continue }
            let parts = line[start...].split(separator: "`", omittingEmptySubsequences: false)
            for (i, part) in parts.enumerated() where i % 2 == 1 { names.insert(String(part)) }
        }
        return names
    }

    static func load() throws -> [Entry] {
        let text = try read(path)
        var entries: [Entry] = []
        var name: String?
        var expectation = Expectation.agree
        var lines: [String] = []
        func flush() throws {
            guard let n = name else { return }
            entries.append(
                Entry(name: n, expectation: expectation, script: try Script(parsing: lines.joined(separator: "\n"))))
            lines = []
        }
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if line.hasPrefix("## name:") {
                try flush()
                name = line.dropFirst("## name:".count).trimmingCharacters(in: " ")
                expectation = .agree
            } else if line.hasPrefix("## expect:") {
                let raw = line.dropFirst("## expect:".count).trimmingCharacters(in: " ")
                guard let e = Expectation(rawValue: raw) else {
                    throw ScriptHarnessError("unknown expectation '\(raw)'")
                }
                expectation = e
            } else if name != nil && !line.hasPrefix("#") {
                lines.append(line)
            }
        }
        try flush()
        return entries
    }
}

extension Substring {
    func trimmingCharacters(in set: Character) -> String {
        String(drop { $0 == set }.reversed().drop { $0 == set }.reversed())
    }
}
