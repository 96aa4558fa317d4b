import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket
import Synchronization
import TaskGateCore

/// HTTP/1.1 with TaskGate's own WebSocket upgrade: ordinary requests go to Hummingbird's router as usual; an upgraded
/// connection is served by `WebSocketChannelHandler` on the event loop, and its Swift task ends with the upgrade,
/// so an idle WebSocket costs a few KB of channel state and no task. A connection whose first request is
/// `GET /poll` or `GET /sse` is served the same way, by `LongPollChannelHandler` (its answer closes the connection)
/// or `SSEChannelHandler` (the stream's end does).
struct GatewayHTTPChannel: ServerChildChannel, HTTPChannelHandler {
    enum UpgradeResult: Sendable {
        case webSocket
        /// A long-poll or an event stream, served by its channel handler.
        case servedOnEventLoop
        case notUpgraded(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        case refused(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, GatewayError)
    }

    struct Value: ServerChildChannelValue {
        let upgradeResult: EventLoopFuture<UpgradeResult>
        let channel: any Channel
    }

    /// The WebSocket side of the server: who may connect, and what runs on the WebSocket paths (`/`, `/ws` and
    /// `--ws-path`) and on `/ws/echo`.
    struct WebSockets: Sendable {
        let gateway: Gateway
        let admission: Admission
        let configuration: WebSocketChannelHandler.Configuration
        let inbound: InboundLimits
        let enableEcho: Bool
        let metrics: GatewayMetrics?
        let logger: Logger
        var paths: Set<String> = Set(WebSocketPaths.always)
        var openStreams: OpenStreams?

        enum Route { case gateway, echo }

        func route(_ head: HTTPRequestHead) -> Route? {
            let path = URI(head.uri).path
            if enableEcho && path == WebSocketPaths.echo { return .echo }
            return paths.contains(path) ? .gateway : nil
        }

        /// The admission gate, the only one: NIO asks it about every request it would upgrade, after reading the
        /// `Upgrade` and `Connection` headers its own way, so no spelling of them gets past it. A refusal is
        /// answered as HTTP with its status and JSON body; an admitted gateway socket holds its place in the
        /// connection limits from here on.
        func admit(_ head: HTTPRequestHead, channel: any Channel) throws(GatewayError) -> WebSocketChannelHandler {
            guard let route = route(head) else { throw GatewayError(.notFound, "no WebSocket endpoint at \(URI(head.uri).path)") }
            let endpoint: WebSocketChannelHandler.Endpoint
            var configuration = configuration
            switch route {
            case .gateway:
                let identity: Admission.Identity
                let connectionID: String
                do {
                    identity = try admission.identify(.init(head: head, remote: channel.remoteAddress))
                    connectionID = try admission.admitConnection(uid: identity.uid)
                } catch {
                    logger.notice(
                        "websocket upgrade refused",
                        metadata: ["status": "\(error.code)", "reason": .string(error.info), "remote": "\(channel.remoteAddress.map { "\($0)" } ?? "-")"])
                    throw error
                }
                endpoint = .gateway(GatewaySocketEndpoint(
                    gateway: gateway, identity: identity, connectionID: connectionID,
                    remote: GatewayRequestContext.describe(channel.remoteAddress), logger: logger, limits: inbound))
            case .echo:
                endpoint = .echo
                configuration.maxMessageBytes = configuration.frameLimit
            }
            let deflate = PerMessageDeflate.negotiate(offers: head.headers["sec-websocket-extensions"])
            return WebSocketChannelHandler(
                configuration: configuration, endpoint: endpoint, deflate: deflate, metrics: metrics, openStreams: openStreams)
        }
    }

    let responder: HTTPChannelHandler.Responder
    let webSockets: WebSockets
    let longPoll: LongPollEndpoint
    let eventStream: SSEEndpoint
    let limits: HTTPLimits
    let drain: ServerDrain
    let logger: Logger

    init(
        responder: @escaping HTTPChannelHandler.Responder, webSockets: WebSockets, longPoll: LongPollEndpoint,
        eventStream: SSEEndpoint, limits: HTTPLimits, drain: ServerDrain, logger: Logger
    ) {
        self.responder = Self.redirectingLateUpgrades(responder)
        self.webSockets = webSockets
        self.longPoll = longPoll
        self.eventStream = eventStream
        self.limits = limits
        self.drain = drain
        self.logger = logger
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            // Draining for a shutdown: a new connection is closed at once rather than served halfway.
            if drain.isDraining {
                channel.close(promise: nil)
                throw ChannelError.ioOnClosedChannel
            }
            let webSockets = self.webSockets
            let connectionGuard = HTTPConnectionGuard(limits: limits, logger: self.logger)
            // What the gate decided, for `upgradePipelineHandler` or the refusal (all see only the request head).
            let accepted = NIOLoopBoundBox<WebSocketChannelHandler?>(nil, eventLoop: channel.eventLoop)
            let refusal = NIOLoopBoundBox<GatewayError?>(nil, eventLoop: channel.eventLoop)
            let firstHeadHandler = FirstRequestHead()
            let firstHead = NIOLoopBound(firstHeadHandler, eventLoop: channel.eventLoop)
            let longPoll = self.longPoll
            let eventStream = self.eventStream
            let pollLogger = self.logger
            let upgrader = NIOTypedWebSocketServerUpgrader<UpgradeResult>(
                maxFrameSize: webSockets.configuration.frameLimit,
                shouldUpgrade: { channel, head in
                    channel.eventLoop.makeCompletedFuture {
                        do throws(GatewayError) {
                            let handler = try webSockets.admit(head, channel: channel)
                            accepted.value = handler
                            // Out now, before NIO removes the HTTP decoder: the bytes it read past the head (the
                            // first frames) come next as raw bytes, which are no business of an HTTP handler. A
                            // WebSocket keeps itself alive with pings; the HTTP deadlines no longer apply.
                            channel.pipeline.syncOperations.removeHandler(connectionGuard, promise: nil)
                            var headers = HTTPHeaders()
                            if let deflate = handler.deflate { headers.add(name: "Sec-WebSocket-Extensions", value: deflate.responseHeader) }
                            return headers
                        } catch {
                            refusal.value = error
                            return nil
                        }
                    }
                },
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        guard let handler = accepted.value else { throw ChannelError.inappropriateOperationForState }
                        accepted.value = nil
                        try channel.pipeline.syncOperations.addHandler(handler)
                        return UpgradeResult.webSocket
                    }
                }
            )
            let serverUpgrade = NIOTypedHTTPServerUpgradeConfiguration(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if refusal.value == nil, let head = firstHead.value.head {
                            if LongPollChannelHandler.serves(head) {
                                try channel.pipeline.syncOperations.addHandler(LongPollChannelHandler(endpoint: longPoll, logger: pollLogger))
                                return UpgradeResult.servedOnEventLoop
                            }
                            if SSEChannelHandler.serves(head) {
                                let handler = SSEChannelHandler(
                                    endpoint: eventStream, outbound: webSockets.configuration.outbound,
                                    openStreams: webSockets.openStreams, logger: pollLogger)
                                try channel.pipeline.syncOperations.addHandler(handler)
                                return UpgradeResult.servedOnEventLoop
                            }
                        }
                        try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try channel.pipeline.syncOperations.addHandler(HTTPConnectionStateHandler(logger: logger))
                        let asyncChannel = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                        if let error = refusal.value { return UpgradeResult.refused(asyncChannel, error) }
                        return UpgradeResult.notUpgraded(asyncChannel)
                    }
                }
            )
            var configuration = NIOUpgradableHTTPServerPipelineConfiguration<UpgradeResult>(upgradeConfiguration: serverUpgrade)
            // As Hummingbird's own channels: the async channel pipelines HTTP, Hummingbird handles errors and
            // validates response headers. Malformed requests are answered by the connection guard.
            configuration.enablePipelining = false
            configuration.enableErrorHandling = false
            configuration.enableResponseHeaderValidation = false
            var decoderLimits = NIOHTTPDecoderLimitConfiguration()
            decoderLimits.maxHeaderFieldSize = limits.decoderLimit
            decoderLimits.maxHeaderListSize = limits.decoderLimit
            decoderLimits.maxHeaderFieldCount = 1000
            configuration.decoderConfiguration = decoderLimits
            let result = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: configuration)
            let decoder = try channel.pipeline.syncOperations.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try channel.pipeline.syncOperations.addHandler(connectionGuard, position: .after(decoder))
            try channel.pipeline.syncOperations.addHandler(firstHeadHandler, position: .after(connectionGuard))
            return Value(upgradeResult: result, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.upgradeResult.get() {
            case .webSocket, .servedOnEventLoop:
                // The channel lives on in its handlers; nothing to wait for here.
                return
            case .notUpgraded(let http):
                await handleHTTP(asyncChannel: http, logger: logger)
            case .refused(let http, let error):
                await refuse(http, error, logger: logger)
            }
        } catch let error as ChannelError where error == .inputClosed {
            logger.trace("connection closed before its first request")
        } catch {
            logger.debug("upgrade failed", metadata: ["error": "\(error)"])
        }
    }

    /// A refused upgrade (no WebSocket at that path, a bad identity, a full connection limit): its status with the
    /// JSON error body, then close.
    private func refuse(_ http: NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, _ error: GatewayError, logger: Logger) async {
        let body = ByteBuffer(string: WireJSON.encode(ServerMessage.error(error, ref: nil)))
        do {
            try await http.executeThenClose { _, outbound in
                let head = HTTPResponse(status: .init(code: error.code), headerFields: [
                    .connection: "close", .contentType: "application/json; charset=utf-8", .contentLength: "\(body.readableBytes)",
                ])
                try await outbound.write(contentsOf: [.head(head), .body(body), .end(nil)])
            }
        } catch {
            logger.trace("could not answer a refused upgrade", metadata: ["error": "\(error)"])
        }
    }

    /// NIO only upgrades a connection's first request. A later request asking for an upgrade is sent back to the same
    /// URI on a new connection (as hummingbird-websocket does), rather than served as a plain GET.
    static func redirectingLateUpgrades(_ responder: @escaping HTTPChannelHandler.Responder) -> HTTPChannelHandler.Responder {
        struct RedirectedUpgrade: Error {}
        return { request, responseWriter, channel in
            guard Self.asksForWebSocket(request.headers) else {
                return try await responder(request, responseWriter, channel)
            }
            let location = request.uri.query.map { "\(request.uri.path)?\($0)" } ?? request.uri.path
            try await responseWriter.writeResponse(HTTPResponse(status: .temporaryRedirect, headerFields: [.connection: "close", .location: location]))
            throw RedirectedUpgrade()
        }
    }
}

/// Notes a connection's first request head on its way to the upgrade handler, which decides what serves the
/// connection before that head goes any further; then steps aside.
final class FirstRequestHead: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    private(set) var head: HTTPRequestHead?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if head == nil, case .head(let first) = unwrapInboundIn(data) {
            head = first
            context.fireChannelRead(data)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        context.fireChannelRead(data)
    }
}

extension GatewayHTTPChannel {
    /// `Upgrade: websocket` among the upgrade tokens and `upgrade` among the connection options, read as NIO reads
    /// them (comma-separated, case-insensitive).
    static func asksForWebSocket(_ headers: HTTPFields) -> Bool {
        func tokens(_ name: HTTPField.Name) -> [String] {
            headers[values: name].flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
        }
        return tokens(.upgrade).contains { $0.lowercased() == "websocket" } && tokens(.connection).contains { $0.lowercased() == "upgrade" }
    }
}

/// Set when a graceful shutdown begins: from then on new connections are closed as they arrive, while the open
/// ones drain.
public final class ServerDrain: Sendable {
    private let draining = Atomic<Bool>(false)
    public init() {}
    public var isDraining: Bool { draining.load(ordering: .relaxed) }
    public func begin() { draining.store(true, ordering: .relaxed) }
}
