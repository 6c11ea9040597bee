import Compat
import Glibc
import HttpServer
import LoopTools

/// The node's HTTP admin console (`serve --http PORT`): a status page a person reads
/// at a glance, the same figures as JSON for the page's live updates, and Save & Exit.
///
/// Save & Exit changes state, so it is a POST that carries the per-process token
/// printed into the page (`X-Admin-Token`): another site can make a browser send a
/// form POST, but not a custom header, and cannot read the page to learn the token.
/// It is obeyed only from the node's trusted peers, like the RPC save-and-exit.
///
/// Every request must name the console in its Host (`ConsoleAuthorities`): a page of
/// another site whose name an attacker points at 127.0.0.1 (DNS rebinding) is the same
/// origin to the browser, can read what it is served and send the token back, and only
/// its Host and Origin tell it apart.
final class AdminConsole {
    let node: RpcNode
    let http: HttpServer
    /// 128 random bits, hex: a new one every process.
    let token: String
    /// The Host (and Origin) forms the console answers to.
    let authorities: ConsoleAuthorities
    /// What the page shows as rendered, beyond what never changes (the hosts table's
    /// liveness and backends): the page is rendered again when it differs.
    let pageKey: () -> [String]
    /// The page as last rendered, serialized, and the key it was rendered for.
    private var page: (key: [String], response: HttpPreparedResponse)?

    /// `hostNames`: names besides its address the console answers to (`serve --http-host`).
    init(node: RpcNode, http: HttpServer, hostNames: [String] = [], pageKey: @escaping () -> [String] = { [] }) {
        self.node = node
        self.http = http
        self.pageKey = pageKey
        self.authorities = ConsoleAuthorities(
            listening: http.tcp.listeningAddress ?? PeerAddress(ip: 0x7f00_0001, port: 0),
            names: hostNames)
        var generator = SystemRandomNumberGenerator()
        self.token = (0..<2).map { _ in
            let hex = String(generator.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }.joined()
        http.handler = { [unowned self] request, responder in self.route(request, responder) }
        node.addStatsSections { [unowned self] in
            [
                ("tcp", .object(self.http.tcp.stats.fields.map { ($0.0, .int($0.1)) })),
                ("http", .object(self.http.stats.fields.map { ($0.0, .int($0.1)) })),
            ]
        }
    }

    private func route(_ request: HttpRequest, _ responder: HttpResponder) {
        // Before anything else, so no figure and no token goes to a page of another name.
        guard let authority = request.authority, authorities.admits(authority) else {
            node.countAdminRefusal()
            responder.respond(
                .text(
                    421,
                    "misdirected request: this console answers only to its own address, "
                        + "Host \(authorities.canonical)"), thenClose: true)
            return
        }
        let readOnly = request.method == "GET" || request.method == "HEAD"
        switch request.path {
        case "/":
            guard readOnly else {
                responder.respond(methodNotAllowed("GET, HEAD"))
                return
            }
            responder.respond(pageResponse())
        case "/status.json":
            guard readOnly else {
                responder.respond(methodNotAllowed("GET, HEAD"))
                return
            }
            responder.respond(HttpResponse(status: 200, fields: jsonFields, body: node.statsJSON().utf8))
        case "/save-exit":
            guard request.method == "POST" else {
                responder.respond(methodNotAllowed("POST"))
                return
            }
            saveAndExit(request, responder)
        default:
            responder.respond(.text(404, "not found: try / or /status.json"))
        }
    }

    private func saveAndExit(_ request: HttpRequest, _ responder: HttpResponder) {
        // A browser names the page a request came from: only this console's own page may ask.
        if let origin = request.field("origin"), !authorities.admits(origin: origin) {
            node.countAdminRefusal()
            responder.respond(json(403, ("ok", .bool(false)), ("error", .string("cross-origin request refused"))))
            return
        }
        guard let given = request.field("x-admin-token"), constantTimeEqual(given, token) else {
            node.countAdminRefusal()
            responder.respond(json(403, ("ok", .bool(false)), ("error", .string("missing or wrong X-Admin-Token"))))
            return
        }
        switch node.saveAndExit(requestedBy: request.peer.ip) {
        case .refused:
            responder.respond(
                json(
                    403, ("ok", .bool(false)),
                    ("error", .string("\(request.peer.ipString) is not among the node's trusted peers"))))
        case .failed(let error):
            responder.respond(
                json(
                    500, ("ok", .bool(false)), ("error", .string(error.description)),
                    ("errno", .int(Int(error.errno)))))
        case .saved:
            responder.respond(
                json(
                    200, ("ok", .bool(true)), ("saved", .bool(true)),
                    ("path", node.savePath.map { .string($0) } ?? .null)), thenClose: true)
            node.exitWhenDrained()
        }
    }

    private func methodNotAllowed(_ allowed: String) -> HttpResponse {
        var response = HttpResponse.text(405, "method not allowed: use \(allowed)")
        response.fields.append(("Allow", allowed))
        return response
    }

    private func json(_ status: Int, _ fields: (String, JSON)...) -> HttpResponse {
        HttpResponse(status: status, fields: jsonFields, body: JSON.object(fields).utf8)
    }

    private let jsonFields: [(name: String, value: String)] = [
        ("Content-Type", "application/json"), ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
    ]

    /// No framing by other sites (a hidden Save & Exit button under a decoy), no scripts from elsewhere.
    private let pageFields: [(name: String, value: String)] = [
        ("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
        (
            "Content-Security-Policy",
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'"
        ),
    ]

    /// Rendered on the first request and again only when `pageKey` changes: the figures
    /// are filled in by the page's script, so the bytes are the same for every request.
    private func pageResponse() -> HttpPreparedResponse {
        let key = pageKey()
        if let page, page.key == key { return page.response }
        let html = ConsolePage.html(stats: node.statsJSON(), token: token)
        let response = HttpPreparedResponse(HttpResponse(status: 200, fields: pageFields, body: Array(html.utf8)))
        page = (key, response)
        return response
    }
}

/// The Host forms a console answers to: its own IP and port; `localhost` and
/// `127.0.0.1` at its port when it listens on loopback; any IPv4 literal at its port when
/// it listens on every interface (0.0.0.0): a browser sends an address as Host only to
/// that very address, and no DNS answer can rebind it; and the names it is given, at its
/// port. No port in Host means 80.
struct ConsoleAuthorities {
    let ip: UInt32
    let port: UInt16
    /// Lowercased.
    let names: Set<String>

    init(listening address: PeerAddress, names: [String]) {
        ip = address.ip
        port = address.port
        var names = Set(names.map { $0.lowercased() })
        if address.ip == 0 || address.ip >> 24 == 127 { names.insert("localhost") }
        self.names = names
    }

    /// The form the refusal names: the address a person would type.
    var canonical: String { "\(ip == 0 ? "127.0.0.1" : PeerAddress(ip: ip, port: port).ipString):\(port)" }

    func admits(_ authority: HttpAuthority) -> Bool {
        guard (authority.port ?? 80) == port else { return false }
        if names.contains(authority.host) { return true }
        guard let literal = PeerAddress.parseIPv4(authority.host) else { return false }
        return ip == 0 || literal == ip
    }

    /// An `Origin` (`http://host:port`, no path) of a page of this console.
    func admits(origin: String) -> Bool {
        guard origin.hasPrefix("http://"), let authority = HttpAuthority(parsing: String(origin.dropFirst(7))) else {
            return false
        }
        return admits(authority)
    }

    /// `--http-host`'s value: comma-separated host names (letters, digits, `-` and dots; no
    /// label starting or ending with `-`; no port: the console's own is implied). Nil when one is not.
    static func names(parsing text: String) -> [String]? {
        let names = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.lowercased() }
        for name in names {
            let labels = name.split(separator: ".", omittingEmptySubsequences: false)
            guard !name.isEmpty, name.count <= 253,
                labels.allSatisfy({ label in
                    !label.isEmpty && label.count <= 63 && label.first != "-" && label.last != "-"
                        && label.utf8.allSatisfy {
                            (0x30...0x39).contains($0) || (0x61...0x7a).contains($0) || $0 == 0x2d
                        }
                })
            else { return nil }
        }
        return names
    }
}

/// Compares without stopping at the first difference: the time taken says nothing about the token.
func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8)
    let y = Array(b.utf8)
    guard x.count == y.count else { return false }
    var difference: UInt8 = 0
    for i in x.indices { difference |= x[i] ^ y[i] }
    return difference == 0
}
