import Compat

/// `--seconds N` of `run` and `serve`: the loop stops `seconds` after now, on a
/// one-shot timer, so an idle loop wakes for the deadline once instead of checking
/// the clock every 100 ms. A deadline beyond one timer's longest delay (about 24.8
/// days; `--seconds` allows a year) is reached in steps of that delay.
func stopLoop(_ loop: Loop, afterSeconds seconds: Int) throws {
    // At most 31,536,000 s: the product fits in Int64 many times over.
    let deadline = loop.now + Int64(seconds) * 1000
    func arm() throws(LoopError) {
        let remaining = deadline - loop.now
        guard remaining > 0 else { return loop.stop() }
        try loop.after(ms: Int(min(remaining, Int64(maximumSleepPeriodMs)))) {
            // The loop is open and on its thread while it runs a callback: arming cannot fail.
            do { try arm() } catch { loop.stop() }
        }
    }
    try arm()
}
