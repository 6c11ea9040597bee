import Compat

/// How far a figure moved over the repetitions of its workload: the lowest and highest value
/// one repetition gave. A ratio's spread pairs repetition i of the dividend with repetition i of
/// the divisor (the contenders of one repetition ran back to back, under the same conditions).
struct Spread: Sendable {
    let low: Double
    let high: Double
    /// Repetitions that gave a figure.
    let runs: Int

    var width: Double { high - low }
    var text: String { format(low, decimals: 2) + "–" + format(high, decimals: 2) }

    /// The spread of `values` (one a repetition); nil when none is a number.
    static func of(_ values: [Double]) -> Spread? {
        let numbers = values.filter(\.isFinite)
        guard let low = numbers.min(), let high = numbers.max() else { return nil }
        return Spread(low: low, high: high, runs: numbers.count)
    }

    /// The spread of `dividend[i] ÷ divisor[i]` over the repetitions both have a figure for.
    static func ofRatios(_ dividend: [Double], _ divisor: [Double]) -> Spread? {
        of(zip(dividend, divisor).compactMap { quotient($0, $1) })
    }
}

extension Goal {
    /// How far `ratio` is from the nearest bound of the goal (whichever side of it it is on).
    func margin(_ ratio: Double) -> Double {
        switch bound {
        case .atLeast, .atMost: return abs(ratio - value)
        case .within(let low, let high): return min(abs(ratio - low), abs(ratio - high))
        }
    }
}

/// What a target's figure says, in the order a reader needs it.
enum Verdict: Equatable, Sendable {
    case met, missed
    /// The figure moved over its repetitions by more than its distance to the goal, or the
    /// machine was busy while it was measured: it could be either.
    case notDecided(String)
    case notApplicable(String?)

    var text: String {
        switch self {
        case .met: return "met"
        case .missed: return "MISSED"
        case .notDecided(let why): return "not decided (\(why))"
        case .notApplicable(let why): return why.map { "n/a: \($0)" } ?? "n/a"
        }
    }

    /// The JSON's `met`: true or false when decided, nil otherwise.
    var met: Bool? {
        switch self {
        case .met: return true
        case .missed: return false
        default: return nil
        }
    }
}

extension TargetResult {
    /// The verdict, given whether a workload it rests on ran on a busy machine.
    /// A single run has no spread to weigh, so its verdict says it rests on one run.
    func verdict(busy: Bool) -> Verdict {
        guard let ratio else { return .notApplicable(note) }
        let holds = goal.holds(ratio)
        if busy { return .notDecided("busy machine; this run: \(holds ? "met" : "missed")") }
        guard let spread, spread.runs >= 2 else { return holds ? .met : .missed }
        let margin = goal.margin(ratio)
        if spread.width > margin {
            return .notDecided(
                "spread \(format(spread.width, decimals: 2)) > margin \(format(margin, decimals: 2))")
        }
        return holds ? .met : .missed
    }
}
