/// Summary statistics of a sample, for latency and period reports.
public struct Sample {
    public init() {}
    public private(set) var values: [Double] = []

    public mutating func add(_ v: Double) { values.append(v) }
    public var count: Int { values.count }
    public var mean: Double { values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count) }

    /// Nearest-rank percentile, `p` in 0...100.
    public func percentile(_ p: Double) -> Double {
        guard !values.isEmpty else { return .nan }
        let sorted = values.sorted()
        let rank = Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1
        return sorted[min(max(rank, 0), sorted.count - 1)]
    }
}

public func format(_ v: Double, _ digits: Int = 2) -> String {
    guard v.isFinite else { return "-" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let r = (v * scale).rounded() / scale
    return digits == 0 ? String(Int(r)) : String(r)
}
