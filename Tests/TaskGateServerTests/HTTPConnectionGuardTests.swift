import NIOCore
import NIOEmbedded
import NIOHTTP1
import TaskGateCore
import Testing

@testable import TaskGateServer

/// The connection guard on an embedded channel behind NIO's own HTTP codec: what a hostile or broken client sends
/// is answered with its status and the connection closed, on a clock the test moves.
@Suite("HTTP connection guard", .timeLimit(.minutes(1)))
struct HTTPConnectionGuardTests {
    func makeChannel(_ limits: HTTPLimits = HTTPLimits()) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        let encoder = HTTPResponseEncoder()
        var decoderLimits = NIOHTTPDecoderLimitConfiguration()
        decoderLimits.maxHeaderFieldSize = limits.decoderLimit
        decoderLimits.maxHeaderListSize = limits.decoderLimit
        try channel.pipeline.syncOperations.addHandler(encoder)
        try channel.pipeline.syncOperations.addHandler(
            ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes, limitConfiguration: decoderLimits)))
        try channel.pipeline.syncOperations.addHandler(HTTPConnectionGuard(limits: limits, logger: .init(label: "test")))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
        return channel
    }

    /// Everything the server wrote, as text.
    func output(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    func send(_ channel: EmbeddedChannel, _ text: String) {
        // A refused request may make the decoder throw; the guard has answered by then.
        _ = try? channel.writeInbound(ByteBuffer(string: text))
    }

    @Test func aHeadThatNeverCompletesGets408() throws {
        var limits = HTTPLimits()
        limits.headerTimeout = .seconds(5)
        let channel = try makeChannel(limits)
        send(channel, "GET / HTTP/1.1\r\nHost: x\r\n")
        channel.embeddedEventLoop.advanceTime(by: .seconds(4))
        #expect(try output(channel).isEmpty)
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(try output(channel).hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
        channel.embeddedEventLoop.advanceTime(by: .seconds(3))
        #expect(!channel.isActive)
    }

    @Test func anIdleKeepAliveConnectionIsClosed() throws {
        var limits = HTTPLimits()
        limits.keepAliveTimeout = .seconds(10)
        let channel = try makeChannel(limits)
        send(channel, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try channel.readInbound(as: HTTPServerRequestPart.self) != nil)
        // The application answers.
        try channel.writeOutbound(HTTPServerResponsePart.head(.init(version: .http1_1, status: .ok, headers: ["content-length": "0"])))
        try channel.writeOutbound(HTTPServerResponsePart.end(nil))
        #expect(try output(channel).hasPrefix("HTTP/1.1 200 OK"))
        channel.embeddedEventLoop.advanceTime(by: .seconds(9))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(!channel.isActive)
        #expect(try output(channel).isEmpty)  // nothing to answer: closed quietly
    }

    @Test func aStalledBodyGets408() throws {
        var limits = HTTPLimits()
        limits.bodyTimeout = .seconds(3)
        let channel = try makeChannel(limits)
        send(channel, "POST /poll HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        send(channel, "de")  // a read resets the clock
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(try output(channel).isEmpty)
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(try output(channel).hasPrefix("HTTP/1.1 408 "))
    }

    @Test(arguments: [
        ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"),
        ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "400"),
        ("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", "400"),
        ("FOO / HTTP/1.1\r\nHost: x\r\n\r\n", "400"),
        ("GET /a\u{0}b HTTP/1.1\r\nHost: x\r\n\r\n", "400"),
        ("GET /" + String(repeating: "a", count: 9000) + " HTTP/1.1\r\nHost: x\r\n\r\n", "414"),
        ("GET / HTTP/1.1\r\nHost: x\r\nX-A: " + String(repeating: "a", count: 40_000) + "\r\n\r\n", "431"),
        ("GET / HTTP/1.1\r\nHost: x\r\nX-A: " + String(repeating: "a", count: 400_000) + "\r\n\r\n", "431"),
    ])
    func malformedOrOversizedRequestsAreAnsweredThenClosed(request: String, status: String) throws {
        let channel = try makeChannel()
        send(channel, request)
        let answer = try output(channel)
        #expect(answer.hasPrefix("HTTP/1.1 \(status) "), "\(answer.prefix(80))")
        #expect(answer.lowercased().contains("connection: close"))
        channel.embeddedEventLoop.advanceTime(by: .seconds(3))
        #expect(!channel.isActive)
    }

    @Test func http10WithoutKeepAliveIsClosedAfterItsAnswer() throws {
        let channel = try makeChannel()
        send(channel, "GET / HTTP/1.0\r\n\r\n")
        #expect(try channel.readInbound(as: HTTPServerRequestPart.self) != nil)
        try channel.writeOutbound(HTTPServerResponsePart.head(.init(version: .http1_0, status: .ok, headers: ["content-length": "0"])))
        try channel.writeOutbound(HTTPServerResponsePart.end(nil))
        #expect(try output(channel).lowercased().contains("connection: close"))
        #expect(!channel.isActive)
    }

    /// A client that has read an answer's body sends its next request, asking to close after it, before that
    /// answer's end has been written: the connection stays open for the second answer and closes after it.
    @Test func aCloseAskedByTheNextRequestWaitsForItsOwnAnswer() throws {
        let channel = try makeChannel()
        send(channel, "GET /api/v1/tasks/a HTTP/1.1\r\nHost: x\r\n\r\n")
        try channel.writeOutbound(HTTPServerResponsePart.head(.init(version: .http1_1, status: .ok, headers: ["content-length": "2"])))
        try channel.writeOutbound(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: "{}"))))
        send(channel, "GET /poll?uid=u HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        try channel.writeOutbound(HTTPServerResponsePart.end(nil))
        let first = try output(channel)
        #expect(first.hasPrefix("HTTP/1.1 200 OK") && !first.lowercased().contains("connection: close"))
        #expect(channel.isActive)
        try channel.writeOutbound(HTTPServerResponsePart.head(.init(version: .http1_1, status: .ok, headers: ["content-length": "0"])))
        try channel.writeOutbound(HTTPServerResponsePart.end(nil))
        #expect(try output(channel).lowercased().contains("connection: close"))
        #expect(!channel.isActive)
    }

    @Test func aDrainClosesIdleConnectionsAndBoundsBusyOnes() throws {
        var limits = HTTPLimits()
        limits.drainTimeout = .seconds(5)
        let idle = try makeChannel(limits)
        idle.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        #expect(!idle.isActive)
        let busy = try makeChannel(limits)
        send(busy, "GET /poll HTTP/1.1\r\nHost: x\r\n\r\n")
        busy.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        #expect(busy.isActive)
        busy.embeddedEventLoop.advanceTime(by: .seconds(6))
        #expect(!busy.isActive)
    }
}

/// The whole upgrade pipeline on an embedded channel (what the `upgrade_gate` fuzz target drives).
@Suite("Upgrade pipeline", .timeLimit(.minutes(1)))
struct UpgradePipelineTests {
    func makeChannel(limits: Limits = Limits()) throws -> (EmbeddedChannel, GatewayHTTPChannel.Value) {
        let gateway = Gateway()
        let admission = Admission(
            mode: .dev, tokens: nil, adminToken: nil, allowedOrigins: [], limits: limits, clients: gateway.clients)
        let webSockets = GatewayHTTPChannel.WebSockets(
            gateway: gateway, admission: admission, configuration: .init(maxMessageBytes: 1024, frameLimit: 4096),
            inbound: InboundLimits(maxMessageBytes: 1024, messagesPerSecond: limits.messagesPerSecond), enableEcho: true, metrics: nil, logger: .init(label: "test"))
        let server = GatewayHTTPChannel(
            responder: { _, _, _ in }, webSockets: webSockets,
            longPoll: LongPollEndpoint(gateway: gateway, admission: admission, metrics: nil),
            eventStream: SSEEndpoint(gateway: gateway, admission: admission, inbound: webSockets.inbound, metrics: nil),
            limits: HTTPLimits(), drain: ServerDrain(),
            logger: .init(label: "test"))
        let channel = EmbeddedChannel()
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
        return (channel, try server.setup(channel: channel, logger: .init(label: "test")).wait())
    }

    func output(_ channel: EmbeddedChannel) -> String {
        var text = ""
        while let part = try? channel.readOutbound(as: IOData.self) {
            if case .byteBuffer(let buffer) = part { text += String(buffer: buffer) }
        }
        return text
    }

    static func upgrade(_ path: String, headers: String = "Upgrade: websocket\r\nConnection: Upgrade\r\n") -> String {
        "GET \(path) HTTP/1.1\r\nHost: x\r\n\(headers)Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    }

    /// Found by fuzzing (fuzz/regressions/upgrade_gate-bytes-after-upgrade-head.bin): a frame's first byte in the same
    /// read as the upgrade request reached the HTTP guard as raw bytes and killed the process.
    @Test func bytesRightAfterTheUpgradeHeadAreFramesNotACrash() throws {
        let (channel, value) = try makeChannel()
        _ = try? channel.writeInbound(ByteBuffer(string: Self.upgrade("/ws/echo") + "\u{81}"))
        channel.embeddedEventLoop.run()
        #expect(output(channel).hasPrefix("HTTP/1.1 101 Switching Protocols"))
        guard case .webSocket = try value.upgradeResult.wait() else { Issue.record("not upgraded"); return }
    }

    /// The gate sees every upgrade NIO performs, whatever the header spelling, and refuses with the status.
    @Test(arguments: [
        "Upgrade: websocket, foo\r\nConnection: keep-alive, Upgrade\r\n", "Upgrade: WebSocket\r\nConnection: upgrade\r\n",
    ])
    func everySpellingOfAnUpgradeMeetsTheGate(headers: String) throws {
        var limits = Limits()
        limits.connections = 0
        let (channel, value) = try makeChannel(limits: limits)
        _ = try? channel.writeInbound(ByteBuffer(string: Self.upgrade("/ws?uid=alice", headers: headers)))
        channel.embeddedEventLoop.run()
        guard case .refused(_, let error) = try value.upgradeResult.wait() else { Issue.record("not refused"); return }
        #expect(error.code == 503)
    }
}
