/// Columns of plain-text tables (the harness's, the benchmarks'), without Foundation.
extension String {
    /// The text, then spaces up to `width` characters; unchanged when already as wide.
    public func padded(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }

    /// Spaces up to `width` characters, then the text (for figures).
    public func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
