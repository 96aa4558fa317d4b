import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import TaskGateCore

/// A `GET /sse` that opened its connection, streamed from the event loop as the WebSocket engine serves a socket:
/// the stream gets no Swift task, and while it waits for events it costs this handler, its session and the
/// channel. The stream ends by closing the connection, so nothing else is ever read from it. The HTTP connection
/// guard before it holds the request to its deadlines; once the stream is open, the heartbeat's writes find a
/// client that has gone.
final class SSEChannelHandler: ChannelInboundHandler, EventLoopStream {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case awaitingRequest
        /// Admitted: the stream opens when the request has been read.
        case admitted(Admission.Identity, connectionID: String)
        case streaming
        case closed
    }

    private let endpoint: SSEEndpoint
    private let openStreams: OpenStreams?
    private let logger: Logger
    private var state = State.awaitingRequest
    private var version = HTTPVersion.http1_1
    private var context: ChannelHandlerContext?
    private var session: ClientSession?
    private var heartbeat: RepeatedTask?
    /// Written while the channel was not writable (the client is not reading fast enough).
    private var backlog: OutboundBacklog
    private var isCounted = false

    init(endpoint: SSEEndpoint, outbound: OutboundLimits, openStreams: OpenStreams?, logger: Logger) {
        self.endpoint = endpoint
        self.openStreams = openStreams
        self.logger = logger
        backlog = OutboundBacklog(limits: outbound)
    }

    /// The first request of a connection that this handler serves instead of the router.
    static func serves(_ head: HTTPRequestHead) -> Bool {
        head.method == .GET && URI(head.uri).path == SSEEndpoint.path
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        tearDown()
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard case .awaitingRequest = state else { return }
            version = head.version
            do throws(GatewayError) {
                let admitted = try endpoint.admit(.init(head: head, remote: context.channel.remoteAddress))
                state = .admitted(admitted.identity, connectionID: admitted.connectionID)
            } catch {
                state = .closed
                ClosingResponse.write(
                    status: error.code, json: WireJSON.encode(ServerMessage.error(error, ref: nil)), version: version, context: context)
            }
        case .body:
            break
        case .end:
            guard case .admitted(let identity, let connectionID) = state else { return }
            open(identity: identity, connectionID: connectionID, context: context)
        }
    }

    private func open(identity: Admission.Identity, connectionID: String, context: ChannelHandlerContext) {
        state = .streaming
        // No length: the body runs until the stream ends (chunked on HTTP/1.1). The connection closes then, as a
        // server may close any connection between responses.
        let headers = HTTPHeaders(SSEEndpoint.responseHeaders)
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: .ok, headers: headers))), promise: nil)
        openStreams?.opened()
        isCounted = true
        let interval = TimeAmount(SSEEndpoint.heartbeat)
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        heartbeat = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            loopBound.value.write(SSEEndpoint.heartbeatFrame)
        }
        session = endpoint.open(
            identity: identity, connectionID: connectionID,
            connection: EventLoopConnection(id: connectionID, stream: self, eventLoop: context.eventLoop),
            remote: GatewayRequestContext.describe(context.channel.remoteAddress), logger: logger)
    }

    // MARK: writing

    func send(_ message: OutgoingMessage) {
        if write(SSEEndpoint.frame(message)) { endpoint.metrics?.messageOut(.sse) }
    }

    /// Messages sent together: written in order, then one flush.
    func send(_ messages: [OutgoingMessage]) {
        var written = 0
        for message in messages where write(SSEEndpoint.frame(message), flush: false) { written += 1 }
        context?.flush()
        endpoint.metrics?.messageOut(.sse, count: written)
    }

    /// Whether the frame went out (it does not once the stream is ending).
    @discardableResult
    private func write(_ frame: String, flush: Bool = true) -> Bool {
        guard case .streaming = state, let context else { return false }
        let buffer = context.channel.allocator.buffer(string: frame)
        // What NIO buffers below its high-water mark is bounded already; past it, the backlog counts.
        if !context.channel.isWritable, !backlog.admit(bytes: buffer.readableBytes) {
            logger.warning(
                "closing an SSE stream that does not read",
                metadata: ["connection": .string(session?.id ?? "-"), "messages": "\(backlog.messages)", "bytes": "\(backlog.bytes)"])
            // The client resumes with `Last-Event-ID`: its events are in the log.
            state = .closed
            Self.closeSoon(context.channel)
            return false
        }
        if flush {
            context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        } else {
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        return true
    }

    /// The session ends the stream (a shutdown): the body is ended and the connection closed.
    func close(_ reason: CloseReason) {
        endStream()
    }

    private func endStream() {
        guard let context else { return }
        let channel = context.channel
        guard case .streaming = state else {
            state = .closed
            return Self.closeSoon(channel)
        }
        state = .closed
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in Self.closeSoon(channel) }
        context.eventLoop.scheduleTask(in: ClosingResponse.readDeadline) { channel.close(promise: nil) }
    }

    /// Closed in a turn of its own: `send` and `close` are called while the event log delivers, and closing at once
    /// would end the session (which leaves the event log) inside that delivery.
    private static func closeSoon(_ channel: any Channel) {
        channel.eventLoop.execute { channel.close(promise: nil) }
    }

    // MARK: lifecycle

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { backlog.clear() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        tearDown()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case is ChannelShouldQuiesceEvent:
            // A graceful shutdown: the stream ends; the browser reconnects (elsewhere) with `Last-Event-ID`.
            endStream()
        case ChannelEvent.inputClosed:
            // The server allows half-closed connections, so a client that hangs up shows as its input closing.
            state = .closed
            context.close(promise: nil)
        default:
            break
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("event stream connection failed", metadata: ["error": "\(error)"])
        state = .closed
        context.close(promise: nil)
    }

    private func tearDown() {
        state = .closed
        heartbeat?.cancel()
        heartbeat = nil
        if let session {
            self.session = nil
            session.closed()
        }
        if isCounted {
            isCounted = false
            openStreams?.closed()
        }
    }
}
