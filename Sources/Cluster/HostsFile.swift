import Compat
import Glibc

/// One member of the cluster, as its line in the hosts file names it.
public struct ClusterHost: Hashable, Sendable, CustomStringConvertible {
    /// 0…count-1, the line's position among the hosts.
    public let id: Int
    /// Where its RPC server listens (the address it binds, and where the others ping it).
    public let address: PeerAddress
    /// Its admin console's TCP port on the same address; nil: no console.
    public let httpPort: UInt16?

    /// The host with `id` at `address`, with a console on `httpPort` (nil: none).
    public init(id: Int, address: PeerAddress, httpPort: UInt16?) {
        self.id = id
        self.address = address
        self.httpPort = httpPort
    }

    public var description: String { "host \(id) (\(address))" }
}

/// The cluster's membership: one host a line, `ID ADDRESS UDP_PORT HTTP_PORT`
/// (whitespace-separated; `HTTP_PORT` may be `-` for no console), `#` to the end of
/// a line is a comment, blank lines are ignored. IDs run 0, 1, 2 … in order, as the
/// original's hosts.conf numbers them, so a host's ID is its index everywhere.
///
/// The original's own hosts.conf is read as it is, so that one file describes a cluster
/// of original and port nodes: a host line `hostId dnsPort httpsPort httpPort udpPort ip1
/// [ip2] [directory] [note]` (the node's RPC server at `ip1:udpPort`, its console at
/// `ip1:httpPort`; the DNS and HTTPS ports, the second NIC and the directory are the
/// original's business), and its directives `num-mirrors:`, `index-splits:`,
/// `working-dir:` and `port-offset:` (Hostdb.cpp). Its spare and proxy hosts are refused:
/// the port's cluster has members only. Both kinds of host line may stand in one file.
///
/// Parsing is strict and complete: every malformed line is named, with its number
/// and why, in one error, so that a file is fixed in one pass.
public struct HostsFile: Equatable, Sendable {
    /// The members, in ID order (a host's ID is its index).
    public let hosts: [ClusterHost]

    /// The original's `MAX_HOSTS`: a bound on what one file may ask a node to ping.
    public static let maxHosts = 512
    /// A hosts file of 512 lines is a few tens of kilobytes; anything past this is not one.
    public static let maxFileBytes = 1 << 20

    /// A membership of `hosts`, taken as given (`parse` and `load` check a file).
    public init(hosts: [ClusterHost]) { self.hosts = hosts }

    /// The host whose address is `ip`:`port`, if a member.
    public func host(at address: PeerAddress) -> ClusterHost? { hosts.first { $0.address == address } }

    /// Whether any member has the address `ip` (an admin request is trusted on this).
    public func hasMember(ip: UInt32) -> Bool { hosts.contains { $0.address.ip == ip } }

    /// Reads and parses the file at `path`.
    public static func load(path: String) throws(HostsFileError) -> HostsFile {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadable(path: path, errno: errno) }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw .unreadable(path: path, errno: errno) }
        guard status.st_mode & S_IFMT == S_IFREG else { throw .notAFile(path: path) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw .unreadable(path: path, errno: errno)
            }
            if n == 0 { break }
            bytes += buffer[0..<n]
            guard bytes.count <= maxFileBytes else { throw .tooLarge(path: path, limit: maxFileBytes) }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw .notText(path: path) }
        return try parse(text)
    }

    /// Parses the text of a hosts file.
    public static func parse(_ text: String) throws(HostsFileError) -> HostsFile {
        var hosts: [ClusterHost] = []
        var problems: [HostsFileError.LineProblem] = []
        // Where each UDP and HTTP address was first claimed, to name both lines of a clash.
        var udpClaims: [PeerAddress: Int] = [:]
        var httpClaims: [PeerAddress: Int] = [:]
        // Every line that is not blank takes a host's place, well-formed or not, so one
        // bad line is one error, not a wrong ID on every line after it.
        var position = 0
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = index + 1
            var line = Substring(rawLine)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            if fields.isEmpty { continue }
            func problem(_ reason: String) {
                problems.append(.init(line: lineNumber, text: String(rawLine), reason: reason))
            }
            // The original's directives take no host's place (Hostdb.cpp reads them by prefix).
            if let directive = originalDirectives.first(where: { fields[0].hasPrefix($0) }) {
                let value =
                    fields[0].count > directive.count
                    ? [fields[0].dropFirst(directive.count)] : Array(fields.dropFirst())
                if directive == "num-mirrors:" || directive == "index-splits:",
                    value.first.map({ !$0.isEmpty && $0.allSatisfy({ $0.isASCII && $0.isNumber }) }) != true
                {
                    problem("\(directive) takes a number")
                } else if directive == "working-dir:", value.first?.hasPrefix("/") != true {
                    problem("working-dir: takes an absolute directory")
                }
                continue
            }
            if let kind = ["spare", "qcproxy", "scproxy", "proxy"].first(where: { fields[0].lowercased().hasPrefix($0) }
            ) {
                problem("a \(kind) host of the original: the port's cluster has members only")
                continue
            }
            let expectedID = position
            position += 1
            // The original's line: hostId dnsPort httpsPort httpPort udpPort ip1 [ip2] [dir] [note].
            let isOriginal =
                fields.count >= 6 && fields[1...4].allSatisfy { $0.allSatisfy { $0.isASCII && $0.isNumber } }
            guard fields.count == 4 || isOriginal else {
                problem(
                    "\(fields.count) field\(fields.count == 1 ? "" : "s"); a host is ID ADDRESS UDP_PORT HTTP_PORT, "
                        + "or the original's hostId dnsPort httpsPort httpPort udpPort ip1 ip2 directory")
                continue
            }
            if isOriginal,
                let (field, name) = [(fields[1], "DNS"), (fields[2], "HTTPS")]
                    .first(where: { (field, _) in field.count > 5 || (Int(field) ?? .max) > 65_535 })
            {
                problem("the \(name) port '\(field)' is not a port 0…65535")
                continue
            }
            let (idField, ipField, udpField, httpField) =
                isOriginal
                ? (fields[0], fields[5], fields[4], fields[3])
                : (fields[0], fields[1], fields[2], fields[3])
            guard let id = Int(idField), idField.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                problem("the ID '\(idField)' is not a number (this line is host \(expectedID))")
                continue
            }
            guard id == expectedID else {
                problem("the ID is \(id), but IDs run 0, 1, 2 … in order: this line is host \(expectedID)")
                continue
            }
            guard let ip = PeerAddress.parseIPv4(ipField) else {
                problem("'\(ipField)' is not an IPv4 address (a.b.c.d)")
                continue
            }
            guard ip != 0, ip != UInt32.max, ip >> 28 != 0xe else {
                problem("\(ipField) cannot be a host's own address (the any, broadcast or a multicast address)")
                continue
            }
            guard let udpPort = port(udpField) else {
                problem("the UDP port '\(udpField)' is not a port 1…65535")
                continue
            }
            var httpPort: UInt16?
            if isOriginal || httpField != "-" {
                guard let parsed = port(httpField) else {
                    problem(
                        "the HTTP port '\(httpField)' is not a port 1…65535\(isOriginal ? "" : " or '-' (no console)")")
                    continue
                }
                httpPort = parsed
            }
            let address = PeerAddress(ip: ip, port: udpPort)
            if let earlier = udpClaims[address] {
                problem("\(address) is host \(earlier)'s UDP address too: two nodes cannot share a port")
                continue
            }
            if let httpPort, let earlier = httpClaims[PeerAddress(ip: ip, port: httpPort)] {
                problem(
                    "\(ipField):\(httpPort) is host \(earlier)'s HTTP address too: two consoles cannot share a port")
                continue
            }
            guard id < maxHosts else {
                problem("more than \(maxHosts) hosts")
                break
            }
            udpClaims[address] = id
            if let httpPort { httpClaims[PeerAddress(ip: ip, port: httpPort)] = id }
            hosts.append(ClusterHost(id: id, address: address, httpPort: httpPort))
        }
        guard problems.isEmpty else { throw .malformed(problems) }
        guard !hosts.isEmpty else { throw .empty }
        return HostsFile(hosts: hosts)
    }

    /// The original's hosts.conf directives (Hostdb.cpp), read by prefix.
    private static let originalDirectives = ["num-mirrors:", "index-splits:", "working-dir:", "port-offset:"]

    private static func port(_ text: Substring) -> UInt16? {
        guard text.count <= 5, text.allSatisfy({ $0.isASCII && $0.isNumber }),
            let value = UInt16(text), value > 0
        else { return nil }
        return value
    }
}

/// Why a hosts file was refused.
public enum HostsFileError: Error, Equatable, CustomStringConvertible {
    /// A line that is not a host, and why.
    public struct LineProblem: Equatable, Sendable, CustomStringConvertible {
        /// The line's number, from 1.
        public let line: Int
        /// The line as written.
        public let text: String
        /// Why it is not a host.
        public let reason: String
        public var description: String { "line \(line): \(reason): '\(text)'" }
    }

    /// The file could not be opened or read.
    case unreadable(path: String, errno: Int32)
    /// The path is not a regular file.
    case notAFile(path: String)
    /// The file is larger than `HostsFile.maxFileBytes`.
    case tooLarge(path: String, limit: Int)
    /// The file is not UTF-8 text.
    case notText(path: String)
    /// Every line that is not a host.
    case malformed([LineProblem])
    /// No host at all (only comments and blank lines).
    case empty

    public var description: String {
        switch self {
        case .unreadable(let path, let code):
            return "cannot read the hosts file \(path): \(String(cString: strerror(code)))"
        case .notAFile(let path): return "the hosts file \(path) is not a regular file"
        case .tooLarge(let path, let limit): return "the hosts file \(path) is larger than \(limit) bytes"
        case .notText(let path): return "the hosts file \(path) is not UTF-8 text"
        case .malformed(let problems):
            return "the hosts file has \(problems.count) malformed line\(problems.count == 1 ? "" : "s"):\n"
                + problems.map { "  \($0)" }.joined(separator: "\n")
        case .empty: return "the hosts file lists no host (one a line: ID ADDRESS UDP_PORT HTTP_PORT)"
        }
    }
}
