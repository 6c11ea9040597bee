import CommandLineOptions
import UdpServer

extension CommandOptions {
    /// A `loop-harness` command, taking the options every harness command takes.
    init(command: String, summary: String, details: String = "", options: [Option], operands: String? = nil) {
        self.init(
            program: "loop-harness", command: command, summary: summary, details: details, options: options,
            operands: operands, common: Self.harnessCommon)
    }

    /// Options every harness command takes.
    static let harnessCommon: [Option] = [
        .backend,
        .json,
        .integer(
            "--datagram-size", (DatagramHeader.dataHeaderSize + 1)...DatagramGeometry.largestDatagramSize,
            default: nil,
            "RPC datagram size in bytes to every peer alike (both ends must agree); default: the original's "
                + "rule, \(DatagramGeometry.loopbackDatagramSize) to this node's own addresses, "
                + "\(DatagramGeometry.lanDatagramSize) to every other"),
        .help,
    ]
}
