import Logging
import NIOCore
import NIOWebSocket
import TaskGateCore

/// The WebSocket protocol (RFC 6455 and 7692) on top of swift-nio's frame codec, as a plain channel handler: it
/// reassembles messages, answers control frames, runs the closing handshake and keeps the connection alive with
/// pings, all on the channel's event loop. What a message means is the endpoint's business: the gateway session on
/// `/ws`, an echo on `/ws/echo`.
final class WebSocketChannelHandler: ChannelInboundHandler, RemovableChannelHandler, EventLoopStream {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    struct Configuration: Sendable {
        /// Largest message the endpoint accepts (after inflating); larger ones get a `413` reply.
        var maxMessageBytes: Int
        /// Largest message (compressed or inflated) the socket holds at all; beyond it the connection closes with 1009.
        var frameLimit: Int
        var pingInterval: TimeAmount = .seconds(30)
        /// How long a close frame of ours waits for the client's before the TCP connection is dropped.
        var closeTimeout: TimeAmount = .seconds(3)
        /// What may wait while the socket cannot take more before a client that does not read is closed.
        var outbound = OutboundLimits()
    }

    enum Endpoint: Sendable {
        case gateway(GatewaySocketEndpoint)
        case echo
    }

    private enum State {
        case open
        /// Our close frame is out; waiting for the client's.
        case closing
        case closed
    }

    private let configuration: Configuration
    private let endpoint: Endpoint
    let deflate: PerMessageDeflate?
    private let metrics: GatewayMetrics?
    private let openStreams: OpenStreams?
    /// Counted in `openStreams` from `handlerAdded` until the tear-down.
    private var isCounted = false
    private var context: ChannelHandlerContext?
    private var state = State.open
    /// Inside a read burst (`channelRead` until `channelReadComplete`): frames wait for its end to be flushed.
    private var reading = false
    /// Writing messages sent together: they are flushed once, after the last.
    private var writingBatch = false
    private var flushPending = false
    private var session: ClientSession?

    // The message being reassembled.
    private var message: ByteBuffer?
    private var messageIsText = false
    private var messageIsCompressed = false
    private var messageSize = 0

    private var keepAlive: RepeatedTask?
    private var awaitingPong = false
    private var readSinceLastPing = false
    /// Written while the channel was not writable (the client is not reading fast enough).
    private var backlog: OutboundBacklog

    init(
        configuration: Configuration, endpoint: Endpoint, deflate: PerMessageDeflate?, metrics: GatewayMetrics?,
        openStreams: OpenStreams? = nil
    ) {
        self.openStreams = openStreams
        self.configuration = configuration
        self.endpoint = endpoint
        self.deflate = deflate
        self.metrics = metrics
        backlog = OutboundBacklog(limits: configuration.outbound)
    }

    // MARK: lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        openStreams?.opened()
        isCounted = true
        let interval = configuration.pingInterval
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        keepAlive = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            loopBound.value.keepAliveTick()
        }
        if case .gateway(let gateway) = endpoint {
            session = gateway.open(socket: self, eventLoop: context.eventLoop)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        tearDown()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        tearDown()
        context.fireChannelInactive()
    }

    private func tearDown() {
        state = .closed
        if isCounted {
            isCounted = false
            openStreams?.closed()
        }
        keepAlive?.cancel()
        keepAlive = nil
        message = nil
        if let session {
            self.session = nil
            if case .gateway(let gateway) = endpoint { gateway.closed(session) }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            // The server is shutting down: say goodbye, the client reconnects elsewhere with its cursor.
            close(.goingAway)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        state = .closed
        // A protocol error from the frame decoder is answered with a close frame by the handler before us, which
        // then closes the channel; anything else (a reset connection) ends it here.
        if !(error is NIOWebSocketError) { context.close(promise: nil) }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { backlog.clear() }
        context.fireChannelWritabilityChanged()
    }

    // MARK: reading

    func channelReadComplete(context: ChannelHandlerContext) {
        reading = false
        if flushPending {
            flushPending = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        reading = true
        let frame = unwrapInboundIn(data)
        readSinceLastPing = true
        guard state != .closed else { return }
        guard frame.maskKey != nil else { return fail(.protocolError, "client frames must be masked") }
        guard !frame.rsv2, !frame.rsv3 else { return fail(.protocolError, "reserved bits set") }
        switch frame.opcode {
        case .connectionClose:
            guard !frame.rsv1 else { return fail(.protocolError, "reserved bit set on a control frame") }
            receivedClose(frame)
        case .ping:
            guard !frame.rsv1 else { return fail(.protocolError, "reserved bit set on a control frame") }
            if state == .open {
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
            }
        case .pong:
            guard !frame.rsv1 else { return fail(.protocolError, "reserved bit set on a control frame") }
            awaitingPong = false
        case .text, .binary:
            guard message == nil else { return fail(.protocolError, "expected a continuation frame") }
            guard !frame.rsv1 || deflate != nil else { return fail(.protocolError, "compressed frame without permessage-deflate") }
            messageIsText = frame.opcode == .text
            messageIsCompressed = frame.rsv1
            messageSize = 0
            if frame.fin {
                // The usual case, a message in one frame: no reassembly buffer.
                messageSize = frame.length
                guard messageSize <= configuration.frameLimit else { return fail(.messageTooLarge, "message too large") }
                let (payload, isASCII) = frame.unmaskedPayload(allocator: context.channel.allocator)
                return finish(payload, isASCII: isASCII && !messageIsCompressed, context: context)
            }
            message = context.channel.allocator.buffer(capacity: frame.length)
            append(frame, context: context)
        case .continuation:
            guard message != nil else { return fail(.protocolError, "unexpected continuation frame") }
            guard !frame.rsv1 else { return fail(.protocolError, "reserved bit set on a continuation frame") }
            append(frame, context: context)
        default:
            fail(.protocolError, "unknown opcode")
        }
    }

    private func append(_ frame: WebSocketFrame, context: ChannelHandlerContext) {
        var data = frame.unmaskedPayload(allocator: context.channel.allocator).payload
        messageSize += data.readableBytes
        guard messageSize <= configuration.frameLimit else { return fail(.messageTooLarge, "message too large") }
        // A compressed message is kept whole to be inflated, text whole to check its UTF-8; the rest of an oversized
        // binary message is only counted, for its `413`.
        if messageIsCompressed || messageIsText || messageSize <= configuration.maxMessageBytes {
            message?.writeBuffer(&data)
        }
        guard frame.fin, let payload = message else { return }
        message = nil
        finish(payload, isASCII: false, context: context)
    }

    /// `isASCII`: the payload is known to be ASCII text already (checked while it was unmasked).
    private func finish(_ payload: ByteBuffer, isASCII: Bool, context: ChannelHandlerContext) {
        var payload = payload
        // Once our close frame is out, data is read and dropped.
        guard state == .open else { return }
        if messageIsCompressed, let deflate {
            do {
                payload = try deflate.inflate(&payload, limit: configuration.frameLimit, allocator: context.channel.allocator)
            } catch .tooLarge {
                return fail(.messageTooLarge, "message too large")
            } catch {
                return fail(.dataInconsistentWithMessage, "bad compressed data")
            }
            messageSize = payload.readableBytes
        }
        if messageIsText && !isASCII {
            guard Self.isValidUTF8(payload) else {
                return fail(.dataInconsistentWithMessage, "text message is not valid UTF-8")
            }
        }
        deliver(payload, isText: messageIsText, size: messageSize, context: context)
    }

    private func deliver(_ payload: ByteBuffer, isText: Bool, size: Int, context: ChannelHandlerContext) {
        switch endpoint {
        case .echo:
            write(payload, opcode: isText ? .text : .binary)
        case .gateway:
            // What the message means, and the rules it must pass, are the client session's.
            if session?.receive(payload.readableBytesView, size: size, isText: isText) == true { metrics?.messageIn(.webSocket) }
        }
    }

    private func receivedClose(_ frame: WebSocketFrame) {
        var data = frame.unmaskedData
        var code: UInt16?
        switch data.readableBytes {
        case 0: break
        case 1: return fail(.protocolError, "close frame with a one-byte body")
        default:
            let received = data.readInteger(as: UInt16.self)!
            guard Self.isValidCloseCode(received) else { return fail(.protocolError, "invalid close code") }
            guard String(validating: data.readableBytesView, as: UTF8.self) != nil else {
                return fail(.dataInconsistentWithMessage, "close reason is not valid UTF-8")
            }
            code = received
        }
        // Echo the client's code, then hang up: the server closes TCP first (RFC 6455 §7.1.1).
        hangUp { body in
            if let code { body.writeInteger(code) }
        }
    }

    /// ASCII, the usual JSON, is checked byte by byte without allocating; anything else by the standard library.
    static func isValidUTF8(_ buffer: ByteBuffer) -> Bool {
        let isASCII = buffer.withUnsafeReadableBytes { bytes in
            bytes.allSatisfy { $0 < 0x80 }
        }
        return isASCII || String(validating: buffer.readableBytesView, as: UTF8.self) != nil
    }

    /// Codes a peer may send (RFC 6455 §7.4): the defined ones that may appear on the wire, and the registered and
    /// private ranges.
    static func isValidCloseCode(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1011, 3000...4999: true
        default: false
        }
    }

    // MARK: writing

    /// One text message to the client, compressed when that was negotiated and worth it.
    func send(_ message: OutgoingMessage) {
        guard let context else { return }
        if write(context.channel.allocator.buffer(string: message.json), opcode: .text) { metrics?.messageOut(.webSocket) }
    }

    /// Messages sent together (events published at once, a catch-up): one flush, so one `writev`.
    func send(_ messages: [OutgoingMessage]) {
        guard let context else { return }
        let flushesAfter = !reading && !writingBatch
        writingBatch = true
        for message in messages { send(message) }
        writingBatch = false
        if flushesAfter && flushPending {
            flushPending = false
            context.flush()
        }
    }

    /// Whether the message went out (it does not once the connection is closing).
    @discardableResult
    private func write(_ payload: ByteBuffer, opcode: WebSocketOpcode) -> Bool {
        guard state == .open, let context else { return false }
        let frame: WebSocketFrame
        if let deflate, let compressed = deflate.deflate(payload, allocator: context.channel.allocator) {
            frame = WebSocketFrame(fin: true, rsv1: true, opcode: opcode, data: compressed)
        } else {
            frame = WebSocketFrame(fin: true, opcode: opcode, data: payload)
        }
        // What NIO buffers below its high-water mark is bounded already; past it, the backlog counts.
        if !context.channel.isWritable, !backlog.admit(bytes: frame.length) {
            overflow()
            return false
        }
        if reading || writingBatch {
            // Answers to what this read brought (pongs, errors, replies given on the loop) go out together when
            // the read ends: one `writev` for the burst; so do messages sent together.
            context.write(wrapOutboundOut(frame), promise: nil)
            flushPending = true
        } else {
            context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
        }
        return true
    }

    /// The client stopped reading: close (1013, it resumes from its cursor; its events are in the log) and drop the
    /// connection if it does not read the close frame either.
    private func overflow() {
        if case .gateway(let gateway) = endpoint {
            gateway.logger.warning(
                "closing a connection that does not read",
                metadata: [
                    "connection": .string(session?.id ?? "-"), "messages": "\(backlog.messages)", "bytes": "\(backlog.bytes)",
                ])
        }
        close(.tryAgainLater("you are not reading: reconnect with your cursor"), timeout: .seconds(2))
    }

    func close(_ reason: CloseReason) {
        close(reason, timeout: nil)
    }

    /// Starts the closing handshake; the TCP connection goes when the client answers, or after the timeout.
    func close(_ reason: CloseReason, timeout: TimeAmount?) {
        guard state == .open, let context else { return }
        let (code, text) = Self.closeFrame(for: reason)
        var body = context.channel.allocator.buffer(capacity: 0)
        Self.writeCloseBody(&body, code: code, reason: text)
        state = .closing
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: body)), promise: nil)
        let channel = context.channel
        context.eventLoop.scheduleTask(in: timeout ?? configuration.closeTimeout) { channel.close(promise: nil) }
    }

    /// Fails the connection: a close frame with the reason, then the TCP connection is dropped.
    private func fail(_ code: WebSocketErrorCode, _ reason: String) {
        message = nil
        hangUp { body in Self.writeCloseBody(&body, code: code, reason: reason) }
    }

    /// Ends the connection now: a close frame with the body `fill` writes if ours has not gone out yet, then TCP.
    private func hangUp(_ fill: (inout ByteBuffer) -> Void) {
        guard let context else { return }
        if state == .open {
            var body = context.channel.allocator.buffer(capacity: 0)
            fill(&body)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: body)))
                .whenComplete { _ in channel.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
        state = .closed
    }

    static func closeFrame(for reason: CloseReason) -> (WebSocketErrorCode, String?) {
        switch reason {
        case .goingAway: (.goingAway, "server shutting down")
        case .policyViolation(let text): (.policyViolation, text)
        case .tryAgainLater(let text): (.unknown(1013), text)
        }
    }

    private static func writeCloseBody(_ body: inout ByteBuffer, code: WebSocketErrorCode, reason: String?) {
        body.write(webSocketErrorCode: code)
        if let reason { body.writeString(reason) }
    }

    /// Every ping interval: a client that answered nothing since the last ping is gone; otherwise ping again.
    private func keepAliveTick() {
        guard state == .open, let context else { return }
        if awaitingPong && !readSinceLastPing {
            context.close(promise: nil)
            return
        }
        readSinceLastPing = false
        awaitingPong = true
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: context.channel.allocator.buffer(capacity: 0))), promise: nil)
    }
}
