import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket
import TaskGateCore

/// HTTP/1.1 with TaskGate's own WebSocket upgrade: ordinary requests go to Hummingbird's router as usual; an upgraded
/// connection is served by `WebSocketChannelHandler` on the event loop, and its Swift task ends with the upgrade,
/// so an idle WebSocket costs a few KB of channel state and no task.
struct GatewayHTTPChannel: ServerChildChannel, HTTPChannelHandler {
    enum UpgradeResult: Sendable {
        case webSocket
        case notUpgraded(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        case refused(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, path: String)
    }

    struct Value: ServerChildChannelValue {
        let upgradeResult: EventLoopFuture<UpgradeResult>
        let channel: any Channel
    }

    /// The WebSocket side of the server: who may connect, and what runs on `/ws` and `/ws/echo`.
    struct WebSockets: Sendable {
        let gateway: Gateway
        let admission: Admission
        let configuration: WebSocketChannelHandler.Configuration
        let enableEcho: Bool
        let metrics: GatewayMetrics?
        let logger: Logger

        enum Route { case gateway, echo }

        func route(_ head: HTTPRequestHead) -> Route? {
            switch URI(head.uri).path {
            case "/ws": .gateway
            case "/ws/echo" where enableEcho: .echo
            default: nil
            }
        }
    }

    let responder: HTTPChannelHandler.Responder
    let webSockets: WebSockets

    init(responder: @escaping HTTPChannelHandler.Responder, webSockets: WebSockets) {
        self.responder = Self.redirectingLateUpgrades(responder)
        self.webSockets = webSockets
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let webSockets = self.webSockets
            // What `shouldUpgrade` decided, for `upgradePipelineHandler` (both see only the request head).
            let accepted = NIOLoopBoundBox<WebSocketChannelHandler?>(nil, eventLoop: channel.eventLoop)
            let upgrader = NIOTypedWebSocketServerUpgrader<UpgradeResult>(
                maxFrameSize: webSockets.configuration.frameLimit,
                shouldUpgrade: { channel, head in
                    channel.eventLoop.makeCompletedFuture {
                        guard let route = webSockets.route(head) else { return nil }
                        let endpoint: WebSocketChannelHandler.Endpoint
                        var configuration = webSockets.configuration
                        switch route {
                        case .gateway:
                            // The admission gate has answered refusals with their status already; this is its twin.
                            let identity = try webSockets.admission.identify(.init(head: head, remote: channel.remoteAddress))
                            endpoint = .gateway(GatewaySocketEndpoint(
                                gateway: webSockets.gateway, identity: identity,
                                remote: GatewayRequestContext.describe(channel.remoteAddress), logger: webSockets.logger))
                        case .echo:
                            endpoint = .echo
                            configuration.maxMessageBytes = configuration.frameLimit
                        }
                        let deflate = PerMessageDeflate.negotiate(offers: head.headers["sec-websocket-extensions"])
                        accepted.value = WebSocketChannelHandler(
                            configuration: configuration, endpoint: endpoint, deflate: deflate, metrics: webSockets.metrics)
                        var headers = HTTPHeaders()
                        if let deflate { headers.add(name: "Sec-WebSocket-Extensions", value: deflate.responseHeader) }
                        return headers
                    }
                },
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        guard let handler = accepted.value else { preconditionFailure("upgraded without shouldUpgrade") }
                        accepted.value = nil
                        try channel.pipeline.syncOperations.addHandler(handler)
                        return UpgradeResult.webSocket
                    }
                }
            )
            let refusedPath = NIOLoopBoundBox<String?>(nil, eventLoop: channel.eventLoop)
            let serverUpgrade = NIOTypedHTTPServerUpgradeConfiguration(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try channel.pipeline.syncOperations.addHandler(HTTPConnectionStateHandler(logger: logger))
                        let asyncChannel = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                        if let path = refusedPath.value { return UpgradeResult.refused(asyncChannel, path: path) }
                        return UpgradeResult.notUpgraded(asyncChannel)
                    }
                }
            )
            var configuration = NIOUpgradableHTTPServerPipelineConfiguration<UpgradeResult>(upgradeConfiguration: serverUpgrade)
            // As Hummingbird's own channels: the async channel pipelines HTTP, Hummingbird handles errors and
            // validates response headers.
            configuration.enablePipelining = false
            configuration.enableErrorHandling = false
            configuration.enableResponseHeaderValidation = false
            let result = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: configuration)
            // Remember an upgrade the upgrader declined, to answer it instead of treating it as a plain request.
            let decoder = try channel.pipeline.syncOperations.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try channel.pipeline.syncOperations.addHandler(UpgradeAttemptRecorder(refusedPath: refusedPath, webSockets: webSockets), position: .after(decoder))
            return Value(upgradeResult: result, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.upgradeResult.get() {
            case .webSocket:
                // The channel lives on in its handlers; nothing to wait for here.
                return
            case .notUpgraded(let http):
                await handleHTTP(asyncChannel: http, logger: logger)
            case .refused(let http, let path):
                await refuse(http, path: path, logger: logger)
            }
        } catch let error as ChannelError where error == .inputClosed {
            logger.trace("connection closed before its first request")
        } catch {
            logger.debug("upgrade failed", metadata: ["error": "\(error)"])
        }
    }

    /// An upgrade to a path that has no WebSocket: 404 with the JSON error body, then close.
    private func refuse(_ http: NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, path: String, logger: Logger) async {
        let body = ByteBuffer(string: WireJSON.encode(ServerMessage.error(
            GatewayError(.notFound, "no WebSocket endpoint at \(path)"), ref: nil)))
        do {
            try await http.executeThenClose { _, outbound in
                let head = HTTPResponse(status: .notFound, headerFields: [
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
            guard request.headers[.upgrade]?.lowercased() == "websocket" else {
                return try await responder(request, responseWriter, channel)
            }
            let location = request.uri.query.map { "\(request.uri.path)?\($0)" } ?? request.uri.path
            try await responseWriter.writeResponse(HTTPResponse(status: .temporaryRedirect, headerFields: [.connection: "close", .location: location]))
            throw RedirectedUpgrade()
        }
    }
}

/// Notes the path of a first request that asks for a WebSocket at a path without one, so that the request is
/// answered with 404 rather than routed as plain HTTP; then steps out of the pipeline.
private final class UpgradeAttemptRecorder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    private let refusedPath: NIOLoopBoundBox<String?>
    private let webSockets: GatewayHTTPChannel.WebSockets

    init(refusedPath: NIOLoopBoundBox<String?>, webSockets: GatewayHTTPChannel.WebSockets) {
        self.refusedPath = refusedPath
        self.webSockets = webSockets
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data),
            head.headers["upgrade"].contains(where: { $0.lowercased() == "websocket" })
        {
            if webSockets.route(head) == nil { refusedPath.value = URI(head.uri).path }
        }
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
