// libFuzzer target `upgrade_gate`: raw bytes of a connection → the server's HTTP/1.1 + WebSocket upgrade pipeline
// (`GatewayHTTPChannel.setup`: NIO's `HTTPRequestDecoder`, `HTTPConnectionGuard`, NIO's upgrade handler with the
// admission gate in `shouldUpgrade`, and after an upgrade `WebSocketChannelHandler`) on an `EmbeddedChannel`.
// Whatever follows the request head in the input reaches the pipeline too: more requests, a body, or WebSocket
// frames once upgraded.
//
// Built as a SwiftPM package of its own that depends on this one (see fuzz/upgrade_gate/build.sh): it needs
// TaskGateServer's internals (`@testable import`), NIO and Hummingbird.
//
// The gateway's connection limit is 0, so every `/ws` request whose identity checks pass is refused (503) instead of
// opening a gateway session (which would run Swift tasks that cannot touch an embedded channel); the identity
// checks (uid, token, admin token, origin, cursor) still run on every fuzzed head. `/ws/echo` is enabled and upgrades.
// Properties checked on every input (a broken one traps, and libFuzzer keeps the input as a crash):
//   1. nothing in the pipeline crashes (Swift's runtime checks and, in the default debug build, `assert`s, in NIO's
//      and Hummingbird's code too; ASan as well with TASKGATE_FUZZ_UPGRADE_ASAN=1);
//   2. a `101 Switching Protocols` goes out if and only if the pipeline reports the upgrade, and only for
//      `/ws/echo` (a `/ws` upgrade would have got past the connection limit);
//   3. a refused or plain request never gets a 101.
//
// The input that crashed it (fuzz/regressions/upgrade_gate-bytes-after-upgrade-head.bin: a frame's first byte in the
// same read as an admitted upgrade request) is replayed first by scripts/fuzz.sh;
// `UpgradePipelineTests.bytesRightAfterTheUpgradeHeadAreFramesNotACrash` (Tests/TaskGateServerTests/
// HTTPConnectionGuardTests.swift) covers it in the Swift tests.

import HummingbirdCore
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import TaskGateCore

@testable import TaskGateServer

@inline(never)
func fail(_ what: String, _ input: UnsafeBufferPointer<UInt8>) -> Never {
    let shown = String(decoding: input.prefix(2048), as: UTF8.self)
    fatalError("upgrade_gate: \(what)\ninput (\(input.count) bytes): \(shown.debugDescription)")
}

let quiet = Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() })

struct Server {
    let channel: GatewayHTTPChannel

    init() {
        let gateway = Gateway(logger: quiet)
        var limits = Limits()
        limits.connections = 0
        let admission = Admission(
            mode: .dev, tokens: nil, adminToken: "fuzz-admin-token",
            allowedOrigins: ["https://app.example"], limits: limits, clients: gateway.clients)
        let webSockets = GatewayHTTPChannel.WebSockets(
            gateway: gateway, admission: admission, configuration: .init(maxMessageBytes: 1024, frameLimit: 4096),
            inbound: InboundLimits(maxMessageBytes: 1024, messagesPerSecond: limits.messagesPerSecond), enableEcho: true,
            metrics: nil, logger: quiet)
        channel = GatewayHTTPChannel(
            responder: { _, _, _ in }, webSockets: webSockets,
            longPoll: LongPollEndpoint(gateway: gateway, admission: admission, metrics: nil), limits: HTTPLimits(),
            drain: ServerDrain(), logger: quiet)
    }
}

let server = Server()

/// What the pipeline decided (set on the embedded event loop, which is this thread).
final class Decided: @unchecked Sendable {
    var result: Result<GatewayHTTPChannel.UpgradeResult, any Error>?
}

let switching = Array("HTTP/1.1 101".utf8)

func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard haystack.count >= needle.count else { return false }
    for start in 0...(haystack.count - needle.count) where haystack[start..<(start + needle.count)].elementsEqual(needle) {
        return true
    }
    return false
}

@_cdecl("LLVMFuzzerTestOneInput")
public func upgradeGateFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    let channel = EmbeddedChannel()
    let value: GatewayHTTPChannel.Value
    do {
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
        value = try server.channel.setup(channel: channel, logger: quiet).wait()
    } catch {
        fail("setting up the pipeline failed: \(error)", input)
    }
    let decided = Decided()
    value.upgradeResult.whenComplete { decided.result = $0 }

    // Decoder and protocol errors reach the end of the pipeline and are rethrown here: they are answers, not crashes.
    _ = try? channel.writeInbound(ByteBuffer(bytes: input))
    channel.embeddedEventLoop.run()

    var output: [UInt8] = []
    while let part = try? channel.readOutbound(as: IOData.self) {
        if case .byteBuffer(let buffer) = part { output.append(contentsOf: buffer.readableBytesView) }
    }
    let sent101 = contains(output, switching)
    let upgrade = decided.result
    switch upgrade {
    case .success(.webSocket)?:
        if !sent101 { fail("upgraded without a 101 going out", input) }
        if !isEchoRequest(input) {
            fail("a WebSocket other than /ws/echo was admitted past a connection limit of 0", input)
        }
    case .success(.refused)?, .success(.notUpgraded)?, .success(.longPoll)?, .failure?, nil:
        if sent101 { fail("101 went out but the pipeline reports \(String(describing: upgrade))", input) }
    }
    _ = try? channel.finish(acceptAlreadyClosed: true)
    return 0
}

/// Whether the first request line asks for `/ws/echo`, the only route that may upgrade here (its path read as the
/// server reads it, with Hummingbird's `URI`; the parser skips empty lines before a request line, so does this).
func isEchoRequest(_ input: UnsafeBufferPointer<UInt8>) -> Bool {
    let lines = input.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
    guard let line = lines.first(where: { !$0.allSatisfy { $0 == UInt8(ascii: "\r") } }) else { return false }
    let parts = String(decoding: line, as: UTF8.self).split(separator: " ", omittingEmptySubsequences: true)
    guard parts.count >= 2 else { return false }
    return URI(String(parts[1])).path == "/ws/echo"
}
