import Compat
import Glibc
import LoopTools

/// Which runs disagree. The loops must agree with each other and with the model.
public enum DivergenceKind: String, Sendable, CaseIterable {
    /// The loops agree; the model predicts otherwise (a core bug, or a model rule).
    case loopsVersusModel = "loops≠model"
    /// Epoll disagrees with legacy and the model.
    case epollOnly = "epoll≠legacy=model"
    /// Legacy disagrees with epoll and the model.
    case legacyOnly = "legacy≠epoll=model"
    case allThree = "all three differ"
}

/// One script's three traces.
public struct DifferentialRun: Sendable {
    public let script: Script
    public let epoll: Trace
    public let legacy: Trace
    public let model: Trace
    /// Whether the compared traces had the declared differences taken out.
    public let normalized: Bool

    public init(script: Script, epoll: Trace, legacy: Trace, model: Trace, normalized: Bool) {
        (self.script, self.epoll, self.legacy, self.model, self.normalized) = (script, epoll, legacy, model, normalized)
    }

    /// The same run compared without normalization.
    public var raw: DifferentialRun {
        DifferentialRun(script: script, epoll: epoll, legacy: legacy, model: model, normalized: false)
    }

    public var divergence: DivergenceKind? {
        let (e, l, m) = normalized ? (epoll.normalized, legacy.normalized, model.normalized) : (epoll, legacy, model)
        switch (e == l, e == m, l == m) {
        case (true, true, _): return nil
        case (true, false, _): return .loopsVersusModel
        case (false, false, true): return .epollOnly
        case (false, true, false): return .legacyOnly
        default: return .allThree
        }
    }

    /// The three traces in columns, differing rows marked with `*`.
    public var sideBySide: String {
        let columns = normalized ? [epoll.normalized, legacy.normalized, model.normalized] : [epoll, legacy, model]
        let width = 38
        func cell(_ s: String) -> String {
            s.count > width ? String(s.prefix(width - 1)) + "…" : s.padded(to: width)
        }
        var out = "  " + ["epoll", "legacy", "model"].map(cell).joined(separator: " | ")
        let rows = columns.map(\.lines.count).max() ?? 0
        for i in 0..<rows {
            let cells = columns.map { i < $0.lines.count ? $0.lines[i] : "" }
            let mark = Set(cells).count > 1 ? "* " : "  "
            out += "\n" + mark + cells.map(cell).joined(separator: " | ")
        }
        return out
    }
}

/// Runs scripts on epoll, legacy and the model, compares, and shrinks what diverges.
public struct Differ {
    public var rules: ModelRules
    /// Compare with the declared differences taken out (`Trace.normalized`).
    public var normalizes: Bool
    public var configuration: LoopConfiguration

    public init(
        rules: ModelRules = .port, normalizes: Bool = true, configuration: LoopConfiguration = LoopConfiguration()
    ) {
        self.rules = rules
        self.normalizes = normalizes
        self.configuration = configuration
    }

    public func trace(_ script: Script, on kind: LoopBackendKind) throws -> Trace {
        let clock = ManualClock()
        let loop = try Loop.make(kind, configuration: ScriptRunner.configuration(configuration, clock: clock))
        return try ScriptRunner(loop: loop, clock: clock).run(script)
    }

    /// Runs `script` on both loops and the model; a process-level script runs in
    /// a process of its own per backend (`loop-probe fuzz-process`), and its
    /// trace ends with how that process ended.
    public func run(_ script: Script) throws -> DifferentialRun {
        let run = script.isProcessLevel ? processTrace : trace
        return DifferentialRun(
            script: script, epoll: try run(script, .epoll), legacy: try run(script, .legacy),
            model: ReferenceModel.predict(script, rules: rules), normalized: normalizes)
    }

    /// The probe that runs process-level scripts (next to this executable or test bundle).
    public var probePath = ChildProcess.probePath

    public func processTrace(_ script: Script, on kind: LoopBackendKind) throws -> Trace {
        let child = try ChildProcess(
            ["fuzz-process", "--backend", kind.rawValue, "--script", script.description],
            executable: probePath)
        var trace = Trace()
        while let line = child.line(startingWith: "", timeoutMs: 30_000) { trace.lines.append(line) }
        guard let status = child.waitForExit(timeoutMs: 30_000) else {
            trace.lines.append("end: did not exit")
            return trace
        }
        trace.lines.append("end: " + TraceLine.ending(status))
        return trace
    }

    /// The smallest script found (delta debugging: drop chunks of steps, then
    /// steps inside bodies, while it still diverges the same way).
    public func shrink(_ failing: DifferentialRun) throws -> DifferentialRun {
        guard let kind = failing.divergence else { return failing }
        var best = failing
        func stillFails(_ candidate: [Step]) throws -> Bool {
            let run = try self.run(Script(candidate))
            guard run.divergence == kind else { return false }
            best = run
            return true
        }
        var steps = failing.script.steps
        var changed = true
        while changed {
            changed = false
            // Top-level steps, in halving chunks.
            var chunk = max(1, steps.count / 2)
            while chunk >= 1 {
                var i = 0
                while i < steps.count {
                    var candidate = steps
                    candidate.removeSubrange(i..<min(steps.count, i + chunk))
                    if !candidate.isEmpty, try stillFails(candidate) {
                        steps = candidate
                        changed = true
                    } else {
                        i += chunk
                    }
                }
                chunk /= 2
            }
            // Steps inside bodies, one at a time, at any depth.
            var path = 0
            while let candidate = Self.removingBodyStep(path, from: steps) {
                if try stillFails(candidate) {
                    steps = candidate
                    changed = true
                } else {
                    path += 1
                }
            }
        }
        return best
    }

    /// `steps` without the `index`-th body step (counted depth-first), or nil when there are fewer.
    static func removingBodyStep(_ index: Int, from steps: [Step]) -> [Step]? {
        var remaining = index
        func visit(_ steps: [Step]) -> [Step]? {
            var out = steps
            for (i, step) in steps.enumerated() {
                guard let body = step.body else { continue }
                if remaining < body.count {
                    var newBody = body
                    newBody.remove(at: remaining)
                    out[i] = step.withBody(newBody)
                    return out
                }
                remaining -= body.count
                if let inner = visit(body) {
                    out[i] = step.withBody(inner)
                    return out
                }
            }
            return nil
        }
        return visit(steps)
    }
}

extension Step {
    var body: [Step]? {
        switch self {
        case .watch(_, _, _, _, _, let b), .sleep(_, _, _, _, let b), .after(_, _, _, _, let b), .job(_, _, let b): b
        default: nil
        }
    }

    func withBody(_ body: [Step]) -> Step {
        switch self {
        case .watch(let id, let k, let s, let n, let o, _):
            .watch(id: id, kind: k, slot: s, niceness: n, owner: o, body: body)
        case .sleep(let id, let p, let n, let o, _): .sleep(id: id, periodMs: p, niceness: n, owner: o, body: body)
        case .after(let id, let ms, let n, let o, _): .after(id: id, ms: ms, niceness: n, owner: o, body: body)
        case .job(let id, let n, _): .job(id: id, niceness: n, body: body)
        default: self
        }
    }
}
