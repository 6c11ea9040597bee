extension PeerAddress {
    /// A peer on our own network gets the shorter background resend time:
    /// 10.x, 192.168.x, loopback, or the same /16 as `local`.
    package func isLocal(to local: UInt32) -> Bool {
        let first = ip >> 24
        return first == 10 || ip >> 16 == 0xc0a8 || first == 127 || ip >> 16 == local >> 16
    }
}
