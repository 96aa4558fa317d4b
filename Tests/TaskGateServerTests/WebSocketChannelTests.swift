import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import TaskGateServer

/// The channel-handler WebSocket engine frame by frame, on an embedded channel (the echo endpoint: what comes out
/// is what the protocol layer made of what went in).
@Suite("WebSocket channel handler", .timeLimit(.minutes(2)))
struct WebSocketChannelTests {
    let mask: WebSocketMaskingKey = [1, 2, 3, 4]

    func makeChannel(deflate: PerMessageDeflate? = nil, maxMessageBytes: Int = 1024) throws -> EmbeddedChannel {
        let handler = WebSocketChannelHandler(
            configuration: .init(maxMessageBytes: maxMessageBytes, frameLimit: 4096), endpoint: .echo, deflate: deflate, metrics: nil)
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
        #expect(channel.isActive)
        return channel
    }

    /// A client frame: masked, as RFC 6455 requires.
    func frame(_ opcode: WebSocketOpcode, _ bytes: [UInt8], fin: Bool = true, rsv1: Bool = false, masked: Bool = true) -> WebSocketFrame {
        var data = ByteBuffer(bytes: bytes)
        if masked { data.webSocketMask(mask) }
        return WebSocketFrame(fin: fin, rsv1: rsv1, opcode: opcode, maskKey: masked ? mask : nil, data: data)
    }

    func text(_ string: String, fin: Bool = true) -> WebSocketFrame { frame(.text, Array(string.utf8), fin: fin) }

    /// The next frame the server sent: the loop runs first, since frames written in one turn are flushed together
    /// at its end.
    func outbound(_ channel: EmbeddedChannel) throws -> WebSocketFrame? {
        channel.embeddedEventLoop.run()
        return try channel.readOutbound(as: WebSocketFrame.self)
    }

    func closeCode(of frame: WebSocketFrame?) -> UInt16? {
        guard let frame, frame.opcode == .connectionClose else { return nil }
        var data = frame.data
        return data.readInteger(as: UInt16.self)
    }

    @Test func echoesTextAndReassemblesFragments() throws {
        let channel = try makeChannel()
        try channel.writeInbound(text("hello"))
        let echoed = try #require(try outbound(channel))
        #expect(echoed.opcode == .text && echoed.fin && echoed.maskKey == nil)
        #expect(String(buffer: echoed.data) == "hello")

        try channel.writeInbound(text("frag", fin: false))
        try channel.writeInbound(frame(.ping, Array("p".utf8)))
        try channel.writeInbound(frame(.continuation, Array("ments".utf8)))
        // A ping in the middle of a fragmented message is answered at once.
        let pong = try #require(try outbound(channel))
        #expect(pong.opcode == .pong && String(buffer: pong.data) == "p")
        let whole = try #require(try outbound(channel))
        #expect(String(buffer: whole.data) == "fragments")
        #expect(channel.isActive)
    }

    /// The word-wide unmask gives NIO's bytes for every length and key position, and tells ASCII from the rest
    /// wherever the first high bit falls (in a whole word or in the tail).
    @Test func unmasksAsNIODoesAndSpotsANonASCIIByteAnywhere() {
        var generator = SystemRandomNumberGenerator()
        for count in 0..<40 {
            for extensionBytes in [0, 1, 3] {
                let bytes = (0..<count).map { _ in UInt8.random(in: 0...0x7F, using: &generator) }
                let key = WebSocketMaskingKey.random(using: &generator)
                var masked = ByteBuffer(bytes: bytes)
                masked.webSocketMask(key, indexOffset: extensionBytes)
                let extensionData = extensionBytes == 0 ? nil : ByteBuffer(bytes: [UInt8](repeating: 0, count: extensionBytes))
                let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: key, data: masked, extensionData: extensionData)
                let (payload, isASCII) = frame.unmaskedPayload(allocator: ByteBufferAllocator())
                #expect(Array(payload.readableBytesView) == bytes)
                #expect(isASCII)
                for position in [0, count / 2, count - 1] where count > 0 {
                    var high = bytes
                    high[position] |= 0x80
                    var maskedHigh = ByteBuffer(bytes: high)
                    maskedHigh.webSocketMask(key, indexOffset: extensionBytes)
                    let highFrame = WebSocketFrame(fin: true, opcode: .text, maskKey: key, data: maskedHigh, extensionData: extensionData)
                    let unmasked = highFrame.unmaskedPayload(allocator: ByteBufferAllocator())
                    #expect(Array(unmasked.payload.readableBytesView) == high)
                    #expect(!unmasked.isASCII)
                }
            }
        }
    }

    @Test func textBeyondASCIIIsCheckedForUTF8() throws {
        let channel = try makeChannel()
        let accented = "préférence déjà vue, ça va"
        try channel.writeInbound(text(accented))
        #expect(String(buffer: try #require(try outbound(channel)).data) == accented)
        // Invalid UTF-8 after sixteen ASCII bytes: past the first words the unmask reads.
        try channel.writeInbound(frame(.text, Array("0123456789abcdef".utf8) + [0xC3, 0x28]))
        var last: WebSocketFrame?
        while let next = try outbound(channel) { last = next }
        #expect(closeCode(of: last) == 1007)
    }

    @Test func answersACloseWithTheSameCodeAndHangsUp() throws {
        let channel = try makeChannel()
        var body = ByteBuffer()
        body.writeInteger(UInt16(1000))
        try channel.writeInbound(frame(.connectionClose, Array(body.readableBytesView)))
        #expect(closeCode(of: try outbound(channel)) == 1000)
        #expect(!channel.isActive)
    }

    @Test(arguments: [
        ("unmasked frame", 1002), ("reserved bit", 1002), ("continuation first", 1002), ("text inside a message", 1002),
        ("invalid UTF-8", 1007), ("bad close code", 1002), ("close reason not UTF-8", 1007), ("too large", 1009),
    ])
    func failsTheConnectionOnProtocolErrors(violation: String, expected: Int) throws {
        let channel = try makeChannel()
        switch violation {
        case "unmasked frame": try channel.writeInbound(frame(.text, Array("x".utf8), masked: false))
        case "reserved bit": try channel.writeInbound(frame(.text, Array("x".utf8), rsv1: true))
        case "continuation first": try channel.writeInbound(frame(.continuation, Array("x".utf8)))
        case "text inside a message":
            try channel.writeInbound(text("a", fin: false))
            try channel.writeInbound(text("b"))
        case "invalid UTF-8": try channel.writeInbound(frame(.text, [0xCE, 0xBA, 0xE1, 0xBD]))
        case "bad close code": try channel.writeInbound(frame(.connectionClose, [0x03, 0xED]))  // 1005 may not be sent
        case "close reason not UTF-8": try channel.writeInbound(frame(.connectionClose, [0x03, 0xE8, 0xFF]))
        default:
            // Beyond the frame limit across fragments.
            try channel.writeInbound(frame(.binary, [UInt8](repeating: 7, count: 1000), fin: false))
            for _ in 0..<4 { try channel.writeInbound(frame(.continuation, [UInt8](repeating: 7, count: 1000), fin: false)) }
        }
        var last: WebSocketFrame?
        while let next = try outbound(channel) { last = next }
        #expect(closeCode(of: last) == UInt16(expected))
        #expect(!channel.isActive)
    }

    @Test func inflatesAndDeflatesWithoutContextTakeover() throws {
        let deflate = try #require(PerMessageDeflate.negotiate(offers: ["permessage-deflate; client_max_window_bits"]))
        let channel = try makeChannel(deflate: deflate)
        let json = String(repeating: #"{"id":"t-1","status":"succeeded"},"#, count: 20)
        // The same message twice: with no context carried over, both compress to the same bytes.
        var sent: [ByteBuffer] = []
        for _ in 0..<2 {
            let compressed = try #require(deflate.deflate(ByteBuffer(string: json), allocator: channel.allocator))
            #expect(compressed.readableBytes * 5 < json.utf8.count)
            try channel.writeInbound(frame(.text, Array(compressed.readableBytesView), rsv1: true))
            let echoed = try #require(try outbound(channel))
            #expect(echoed.rsv1)
            sent.append(echoed.data)
            var copy = echoed.data
            let inflated = try deflate.inflate(&copy, limit: 1 << 16, allocator: channel.allocator)
            #expect(String(buffer: inflated) == json)
        }
        #expect(sent[0] == sent[1])
        // Short messages go out as they are.
        try channel.writeInbound(text("hi"))
        #expect(try outbound(channel)?.rsv1 == false)
    }

    @Test func negotiatesOnlyWhatItCanHonour() {
        #expect(PerMessageDeflate.negotiate(offers: []) == nil)
        #expect(PerMessageDeflate.negotiate(offers: ["x-webkit-deflate-frame"]) == nil)
        let plain = PerMessageDeflate.negotiate(offers: ["permessage-deflate"])
        #expect(plain?.responseHeader == "permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        // An 8-bit server window is declined; the client's next offer is taken.
        let fallback = PerMessageDeflate.negotiate(offers: ["permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=10"])
        #expect(fallback?.serverWindowBits == 10)
        #expect(fallback?.responseHeader.hasSuffix("server_max_window_bits=10") == true)
        #expect(PerMessageDeflate.negotiate(offers: ["permessage-deflate; unknown_param"]) == nil)
        #expect(PerMessageDeflate.negotiate(offers: ["permessage-deflate; server_no_context_takeover; server_no_context_takeover"]) == nil)
        #expect(PerMessageDeflate.negotiate(offers: ["permessage-deflate;;"]) == plain)
    }

    @Test func closeCodesFromTheRFC() {
        for code: UInt16 in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999] {
            #expect(WebSocketChannelHandler.isValidCloseCode(code), "\(code)")
        }
        for code: UInt16 in [0, 999, 1004, 1005, 1006, 1012, 1016, 1100, 2000, 2999, 5000, 65535] {
            #expect(!WebSocketChannelHandler.isValidCloseCode(code), "\(code)")
        }
    }

    @Test func pingsEveryIntervalAndDropsAClientThatAnswersNothing() throws {
        let channel = try makeChannel()
        channel.embeddedEventLoop.advanceTime(by: .seconds(30))
        #expect(try outbound(channel)?.opcode == .ping)
        // Any frame counts as a sign of life: the next tick pings again.
        try channel.writeInbound(text("still here"))
        _ = try outbound(channel)
        channel.embeddedEventLoop.advanceTime(by: .seconds(30))
        #expect(try outbound(channel)?.opcode == .ping)
        #expect(channel.isActive)
        // Nothing for a whole interval after a ping: gone.
        channel.embeddedEventLoop.advanceTime(by: .seconds(30))
        #expect(!channel.isActive)
    }

    @Test func shutdownSaysGoingAwayAndWaitsForTheClientsCloseOnlySoLong() throws {
        let channel = try makeChannel()
        channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        #expect(closeCode(of: try outbound(channel)) == 1001)
        // Data after our close frame is not answered; the client's close ends the connection.
        try channel.writeInbound(text("late"))
        #expect(try outbound(channel) == nil)
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(3))
        #expect(!channel.isActive)

        let polite = try makeChannel()
        polite.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        _ = try outbound(polite)
        try polite.writeInbound(frame(.connectionClose, [0x03, 0xE8]))
        #expect(!polite.isActive)
    }
}
