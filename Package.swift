// swift-tools-version:6.0
import PackageDescription

// No package dependencies: the toolchain only. The backend chosen by `Loop`
// is set at build time: plain `swift build` gives epoll,
// `swift build -Xswiftc -DLEGACY_LOOP` the select/signal loop.
let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

let package = Package(
    name: "LoopMigration",
    products: [
        .library(name: "Compat", targets: ["Compat"]),
        .library(name: "UdpServer", targets: ["UdpServer"]),
        .library(name: "TcpServer", targets: ["TcpServer"]),
        .library(name: "HttpServer", targets: ["HttpServer"]),
        .library(name: "Cluster", targets: ["Cluster"]),
        .executable(name: "loop-harness", targets: ["loop-harness"]),
        .executable(name: "loop-bench", targets: ["loop-bench"]),
        .executable(name: "loop-probe", targets: ["loop-probe"]),
    ],
    targets: [
        .target(name: "CLoopShim"),
        .target(name: "LoopCore", dependencies: ["CLoopShim"], swiftSettings: strict),
        .target(name: "LegacyLoop", dependencies: ["LoopCore", "CLoopShim"], swiftSettings: strict),
        .target(name: "EpollLoop", dependencies: ["LoopCore", "CLoopShim"], swiftSettings: strict),
        // The socket system calls (the UDP datagram socket, TCP streams, loopback helpers) and `PeerAddress`.
        .target(name: "Sockets", dependencies: ["LoopCore", "CLoopShim"], swiftSettings: strict),
        .target(
            name: "Compat", dependencies: ["LoopCore", "LegacyLoop", "EpollLoop", "Sockets"], swiftSettings: strict),
        .target(name: "LoopTools", dependencies: ["LoopCore", "Sockets"], swiftSettings: strict),
        .target(name: "UdpServer", dependencies: ["Compat", "LoopCore", "Sockets"], swiftSettings: strict),
        .target(name: "TcpServer", dependencies: ["Compat", "Sockets"], swiftSettings: strict),
        // HTTP/1.1 on the TcpServer: the admin console's server and the fetch client.
        .target(name: "HttpServer", dependencies: ["TcpServer"], swiftSettings: strict),
        // A cluster on the UDP server: the hosts file, pings (the original's PingServer) and failover.
        .target(name: "Cluster", dependencies: ["UdpServer"], swiftSettings: strict),
        // Differential testing: the script language, the runner, the reference model and the differ.
        .target(name: "LoopScript", dependencies: ["Compat", "LoopTools"], swiftSettings: strict),
        // The executables' strict option parser: declared options only, one-line errors, exit 2.
        .target(name: "CommandLineOptions", dependencies: ["Compat", "LoopTools"], swiftSettings: strict),
        // The node's parts that the probes and the tests use too: its trust list, its atomic save, its counters' report.
        .target(name: "NodeSupport", dependencies: ["Compat", "UdpServer", "LoopTools"], swiftSettings: strict),
        // Run only as child processes, by the tests, `loop-harness compare` and `loop-harness fuzz`.
        .executableTarget(
            name: "loop-probe",
            dependencies: ["Compat", "LoopTools", "LoopScript", "CLoopShim", "CommandLineOptions", "NodeSupport"],
            swiftSettings: strict),
        // loop-probe: built with the harness (which starts it), not linked into it.
        .executableTarget(
            name: "loop-harness",
            dependencies: [
                "Compat", "UdpServer", "TcpServer", "HttpServer", "Cluster", "LoopTools", "LoopScript",
                "CLoopShim", "CommandLineOptions", "NodeSupport", "loop-probe",
            ], swiftSettings: strict),
        .executableTarget(
            name: "loop-bench", dependencies: ["Compat", "UdpServer", "LoopTools", "CommandLineOptions"],
            swiftSettings: strict),
        // Test-only helpers every test target shares (imports Testing, so never linked into an executable).
        .target(
            name: "TestSupport", dependencies: ["Compat", "LoopTools", "Sockets"], path: "Tests/TestSupport",
            swiftSettings: strict
        ),
        // The executables it runs as processes (loop-harness, loop-probe, loop-bench) are built by
        // `swift build --build-tests`; a test target depending on an executable target links its code in.
        .testTarget(
            name: "LoopTests",
            dependencies: ["Compat", "CLoopShim", "LoopTools", "LoopScript", "NodeSupport", "TestSupport"],
            exclude: ["Fixtures"], swiftSettings: strict),
        .testTarget(
            name: "UdpServerTests",
            dependencies: ["UdpServer", "Compat", "LoopCore", "LoopTools", "Sockets", "TestSupport"],
            swiftSettings: strict),
        .testTarget(
            name: "ClusterTests", dependencies: ["Cluster", "UdpServer", "Compat", "LoopTools", "TestSupport"],
            swiftSettings: strict),
        .testTarget(
            name: "TcpServerTests", dependencies: ["TcpServer", "HttpServer", "Compat", "LoopTools", "TestSupport"],
            swiftSettings: strict),
    ],
    swiftLanguageModes: [.v6]
)
