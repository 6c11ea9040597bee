import Sockets

/// A UDP socket on a 127/8 address for the harness, the benchmarks and the tests; it
/// lives with the socket code.
package typealias LoopbackSocket = Sockets.LoopbackSocket
