/// When a transaction sends its unacknowledged datagrams again (the original's `setResendTime`).
struct ResendPolicy: Sendable, Equatable {
    /// `RESEND_0`: first resend for niceness 0 (single-datagram messages too).
    static let urgentBaseMs = 170
    /// `RESEND_1` and `RESEND_1_LOCAL`: first resend for niceness > 0.
    static let backgroundBaseMs = 200
    static let backgroundLocalBaseMs = 100
    /// `MAX_RESEND_0` and `MAX_RESEND_1`: the caps unless the caller gives `maxWait`.
    static let urgentCapMs = 200
    static let backgroundCapMs = 15_000

    var niceness: Int
    /// The caller's first resend time, doubled per resend, if given (>= 0).
    var backoffMs: Int?
    /// The caller's cap, if given (>= 0).
    var maxWaitMs: Int?
    var peerIsLocal: Bool

    var capMs: Int {
        if let maxWaitMs, maxWaitMs >= 0 { return maxWaitMs }
        return niceness == 0 ? Self.urgentCapMs : Self.backgroundCapMs
    }

    /// The wait before resend number `resends + 1`. `jitter(t)` returns a value in
    /// `0..<t`; background traffic adds it so that many senders do not resend in step.
    func resendTimeMs(afterResends resends: Int, jitter: (Int) -> Int) -> Int {
        let cap = capMs
        let time: Int
        if let backoffMs, backoffMs >= 0 {
            // A zero backoff doubles to nothing: the original then takes the cap (its overflow check).
            time = backoffMs == 0 ? cap : Self.doubled(backoffMs, times: resends, cap: cap)
        } else if niceness == 0 {
            time = Self.doubled(Self.urgentBaseMs, times: resends, cap: cap)
        } else {
            let base = Self.doubled(
                peerIsLocal ? Self.backgroundLocalBaseMs : Self.backgroundBaseMs,
                times: resends, cap: Int.max)
            time = min(cap, base > Int.max / 2 ? cap : base + jitter(base))
        }
        // A zero wait would resend on every scan; one scan period is the floor in practice anyway.
        return max(1, time)
    }

    /// `value * 2^times`, at most `cap`, without overflowing.
    static func doubled(_ value: Int, times: Int, cap: Int) -> Int {
        guard value > 0 else { return min(cap, 0) }
        // The shift must leave the sign bit clear.
        guard times < value.leadingZeroBitCount - 1 else { return cap }
        return min(cap, value << times)
    }
}
