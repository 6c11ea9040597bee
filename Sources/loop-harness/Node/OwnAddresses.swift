import Cluster
import LoopTools
import Sockets

/// A member's own addresses besides the one it binds: the second IP (ip2, the original's
/// "shotgun" address) of its line in the original's hosts.conf format, which the original's
/// `Hostdb::isMyIp` (Hostdb.h:408) counts as its own, so that both get the 16400-byte datagrams.
/// `HostsFile` keeps ip1 only; the line is read again here (the file was parsed whole already).
func secondAddresses(of me: ClusterHost, inHostsFile path: String) -> [String] {
    guard let text = readTextFile(path) else { return [] }
    for rawLine in text.split(separator: "\n") {
        let line = rawLine.prefix { $0 != "#" }
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
        // hostId dnsPort httpsPort httpPort udpPort ip1 ip2 [directory] [note]
        guard fields.count >= 7, fields[1...4].allSatisfy({ $0.allSatisfy { $0.isASCII && $0.isNumber } }),
            Int(fields[0]) == me.id, UInt16(fields[4]) == me.address.port,
            PeerAddress.parseIPv4(String(fields[5])) == me.address.ip,
            let second = PeerAddress.parseIPv4(String(fields[6])), second != me.address.ip
        else { continue }
        return [PeerAddress(ip: second, port: 0).ipString]
    }
    return []
}
