import Glibc
import LoopCore

/// An IPv4 address and port, in host byte order: what the servers on the loop
/// (UDP and TCP) name their peers and their own sockets by.
public struct PeerAddress: Hashable, Sendable, CustomStringConvertible, LosslessStringConvertible {
    /// e.g. `0x7f00_0001` for 127.0.0.1.
    public var ip: UInt32
    /// The port number (not in network byte order).
    public var port: UInt16

    /// The address `ip`:`port`, both in host byte order.
    public init(ip: UInt32, port: UInt16) {
        self.ip = ip
        self.port = port
    }

    /// 127.0.0.1 on `port`.
    public static func loopback(port: UInt16) -> PeerAddress { PeerAddress(ip: 0x7f00_0001, port: port) }

    /// Parses `"a.b.c.d:port"`.
    public init?(_ description: String) {
        guard let colon = description.lastIndex(of: ":"),
            let ip = Self.parseIPv4(description[..<colon])
        else { return nil }
        let portText = description[description.index(after: colon)...]
        guard !portText.isEmpty, portText.allSatisfy({ ("0"..."9").contains($0) }), let port = UInt16(portText) else {
            return nil
        }
        self.init(ip: ip, port: port)
    }

    /// Parses a dotted quad, strictly: four decimal octets, no extras.
    @inlinable // specialized where it is called: through the protocol, each byte was a witness call
    public static func parseIPv4(_ text: some StringProtocol) -> UInt32? {
        // By byte: the admin console checks every request's Host with it, and splitting
        // into Substrings of Characters cost more than the rest of the request's parse.
        var ip: UInt32 = 0
        var octet: UInt32 = 0
        var digits = 0
        var dots = 0
        for byte in text.utf8 {
            switch byte {
            case 0x30...0x39:
                guard digits < 3 else { return nil }
                octet = octet * 10 + UInt32(byte - 0x30)
                digits += 1
            case 0x2e:
                guard digits > 0, octet <= 255, dots < 3 else { return nil }
                ip = ip << 8 | octet
                octet = 0
                digits = 0
                dots += 1
            default: return nil
            }
        }
        guard dots == 3, digits > 0, octet <= 255 else { return nil }
        return ip << 8 | octet
    }

    /// The address as a dotted quad, e.g. `127.0.0.1`.
    public var ipString: String {
        "\(ip >> 24).\(ip >> 16 & 0xff).\(ip >> 8 & 0xff).\(ip & 0xff)"
    }

    /// `a.b.c.d:port`, the form `init?(_:)` parses.
    public var description: String { "\(ipString):\(port)" }

    // MARK: sockaddr

    /// The address in a `sockaddr_in` (network byte order).
    package init(_ address: sockaddr_in) {
        self.init(ip: UInt32(bigEndian: address.sin_addr.s_addr), port: UInt16(bigEndian: address.sin_port))
    }

    /// This address as a `sockaddr_in` (network byte order), for the socket calls.
    package var socketAddress: sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = ip.bigEndian
        return address
    }
}

extension PeerAddress {
    /// Binds the socket `fd` to this address; the address it got (its port, when this one's is 0).
    package func bind(_ fd: Int32) throws(SystemError) -> PeerAddress {
        var bound = socketAddress
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        try withUnsafeMutablePointer(to: &bound) { (pointer) throws(SystemError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (raw) throws(SystemError) in
                _ = try systemCall("bind(\(self))") { Glibc.bind(fd, raw, length) }
                _ = try systemCall("getsockname") { getsockname(fd, raw, &length) }
            }
        }
        return PeerAddress(bound)
    }
}
