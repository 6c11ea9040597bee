import Compat
import Glibc
import LoopTools
import TestSupport
import Testing

extension LoopConformance {
    /// The console page is rendered once and served as the same bytes: its figures are
    /// placeholders the page's script fills in from `/status.json`, whose figures move.
    @Suite struct ConsolePageBytes {
        @Test(arguments: LoopBackendKind.allCases)
        func pageIsTheSameBytesForEveryRequest(_ kind: LoopBackendKind) throws {
            let node = try ServedNode(["--backend", kind.rawValue, "--http", "0"])
            defer { if node.isRunning { kill(node.process.pid, SIGKILL) } }
            let console = try #require(node.consolePort, "no console line in \(node.seen)")
            let get = { (path: String) in
                try HttpExchange(port: console, "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(console)\r\n\r\n")
            }
            let first = try get("/")
            let status = try get("/status.json")
            usleep(50_000)
            let second = try get("/")
            let head = try HttpExchange(
                port: console, "HEAD / HTTP/1.1\r\nHost: 127.0.0.1:\(console)\r\nConnection: close\r\n\r\n")
            #expect(first.status == 200 && second.status == 200 && status.status == 200)
            // Before, the page carried the figures of the moment: http.requests alone differed.
            #expect(first.body == second.body, "the page changed between two requests")
            #expect(first.field("content-length") == String(first.body.utf8.count))
            #expect(
                head.status == 200 && head.body.isEmpty && head.field("content-length") == String(first.body.utf8.count)
            )
            #expect(first.body.contains("<td data-figure=\"http.requests\">…</td>"))
            #expect(first.body.contains("<span id=\"uptime\">…</span>"))
            #expect(first.body.contains("id=\"backend\" class=\"badge \(kind.rawValue)\""))
            // The figures the script fills the page with move.
            let requests = try #require(jsonInt(status.body, "requests"))
            let later = try #require(jsonInt(try get("/status.json").body, "requests"))
            #expect(later > requests)
            kill(node.process.pid, SIGTERM)
            #expect(node.finish() == 0)
        }
    }
}
