import Cluster
import CommandLineOptions
import Compat
import Glibc
import HttpServer
import LoopTools
import NodeSupport
import UdpServer

let statsOptions = CommandOptions(
    command: "stats",
    summary: "A running node's counters, as the JSON the node sends.",
    options: [targetOption, timeoutOption])

let shutdownOptions = CommandOptions(
    command: "shutdown",
    summary: "Asks a node to save and exit. The node obeys only peers it trusts (serve --trust); a refusal "
        + "or a failed save is an error reply and exit 1, and the node keeps running.",
    options: [targetOption, timeoutOption])

/// `loop-harness stats` and `loop-harness shutdown`: one request to a running node.
func runAdminCommand(_ args: Arguments, _ type: NodeMessage) throws -> Int32 {
    let options = try args.parse(type == .stats ? statsOptions : shutdownOptions)
    return try withClient(options) { loop, client, peer in
        let result = try request(
            loop: loop, client: client, to: peer, type: type, timeoutMs: options.int("--timeout-ms"))
        switch result {
        case .success(let reply):
            let text = String(decoding: reply, as: UTF8.self)
            if options.json {
                say(type == .stats ? text : JSON.object([("ok", .bool(true)), ("reply", .string(text))]).description)
            } else {
                say(type == .stats ? text : "\(peer): \(text)")
            }
            return 0
        case .failure(let error):
            let message = failureText(error, peer: peer, client: client)
            if options.json {
                var fields: [(String, JSON)] = [("ok", .bool(false)), ("error", .string(message))]
                if case .remote(let code) = error { fields.append(("errno", .int(Int(code)))) }
                say(JSON.object(fields).description)
            } else {
                sayError("loop-harness \(options.command): \(message)")
            }
            return 1
        }
    }
}
