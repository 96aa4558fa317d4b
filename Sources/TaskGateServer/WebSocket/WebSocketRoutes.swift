import Foundation
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import TaskGateCore

/// `GET /ws?uid=U[&cursor=N][&admin=1]`: the WebSocket front door.
struct WebSocketRoutes {
    let gateway: Gateway
    let admission: Admission
    let maxMessageBytes: Int
    var metrics: GatewayMetrics? = nil

    /// The WebSocket router: a separate one, so ordinary requests never go through upgrade matching.
    func addUpgradeRoutes(to router: Router<GatewayRequestContext>) {
        router.ws(
            "/ws",
            shouldUpgrade: { request, context in
                // The upgrade gate (AdmissionChannel) has already answered refusals, with their status, and checked
                // the connection limits; this repeats the identity check only.
                _ = try admission.identify(.init(request: request, context: context))
                return .upgrade([:])
            },
            onUpgrade: { inbound, outbound, wsContext in
                let identity = try admission.identify(.init(request: wsContext.request, context: wsContext.requestContext))
                let channel = wsContext.requestContext.channel
                await serve(
                    inbound: inbound, outbound: outbound, identity: identity,
                    remote: wsContext.requestContext.remoteDescription, logger: wsContext.logger,
                    abort: { channel.close(promise: nil) }
                )
            }
        )
    }

    /// `/ws/echo`: echoes every message back, on the very same WebSocket stack and settings as `/ws`. It exists so
    /// that protocol test suites (Autobahn) can exercise that stack; off unless `--enable-echo` is given.
    func addEchoRoute(to router: Router<GatewayRequestContext>, maxMessageBytes: Int) {
        router.ws("/ws/echo") { inbound, outbound, _ in
            for try await message in inbound.messages(maxSize: maxMessageBytes) {
                switch message {
                case .text(let text): try await outbound.write(.text(text))
                case .binary(let buffer): try await outbound.write(.binary(buffer))
                }
            }
        }
    }

    /// A plain GET on /ws (no upgrade headers) gets a clear error instead of a 404.
    func addPlainRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/ws") { request, context -> Response in
            _ = try admission.identify(.init(request: request, context: context))
            throw GatewayError.badRequest("this endpoint needs a WebSocket upgrade (Upgrade: websocket)")
        }
    }

    private func serve(
        inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, identity: Admission.Identity,
        remote: String?, logger: Logger, abort: @escaping @Sendable () -> Void
    ) async {
        let isAdmin = identity.isAdmin
        let connection = WebSocketConnection(
            id: gateway.clients.makeConnectionID(), outboundLimit: admission.limits.outboundMessages, logger: logger, abort: abort,
            metrics: metrics)
        let session = Session(uid: identity.uid, isAdmin: isAdmin, transport: .webSocket, gateway: gateway)
        let info = ClientInfo(id: connection.id, uid: identity.uid, transport: .webSocket, remote: remote, admin: isAdmin)
        gateway.clients.add(info)
        logger.info("websocket connected", metadata: ["uid": .string(identity.uid), "connection": .string(connection.id)])
        do {
            try await gateway.events.subscribe(uid: identity.uid, connection: connection, after: identity.cursor) { latestSeq, reset in
                .hello(uid: identity.uid, transport: .webSocket, latestSeq: latestSeq, admin: isAdmin, reset: reset)
            }
        } catch {
            // The user's events could not be loaded: say so and close, rather than serve a log with holes.
            logger.error("could not load events", metadata: ["uid": .string(identity.uid), "error": "\(error)"])
            connection.send(OutgoingMessage(ServerMessage.error(GatewayError(.unavailable, "events unavailable; try again"), ref: nil)))
            connection.close(reason: .tryAgainLater("events unavailable"))
        }
        connection.attach(outbound)
        await readMessages(
            inbound: inbound, outbound: outbound, session: session, connection: connection,
            rateLimiter: RateLimiter(perSecond: admission.limits.messagesPerSecond))
        await connection.finish()
        gateway.events.unsubscribe(uid: identity.uid, connectionID: connection.id)
        gateway.clients.remove(id: connection.id)
        logger.info("websocket disconnected", metadata: ["uid": .string(identity.uid), "connection": .string(connection.id)])
    }

    /// Reads whole messages frame by frame, so that a message over the limit is answered with `413 too_large` and
    /// the connection stays open (the library's message reader would close it).
    private func readMessages(
        inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, session: Session, connection: WebSocketConnection,
        rateLimiter: RateLimiter
    ) async {
        var rateLimiter = rateLimiter
        var frames = inbound.makeAsyncIterator()
        var message = ByteBuffer()
        var inMessage = false
        var isText = true
        var size = 0
        do {
            while let frame = try await frames.next() {
                switch frame.opcode {
                case .text, .binary:
                    guard !inMessage else { return try await outbound.close(.protocolError, reason: "expected a continuation frame") }
                    inMessage = true
                    isText = frame.opcode == .text
                    size = 0
                    message.clear()
                case .continuation:
                    guard inMessage else { return try await outbound.close(.protocolError, reason: "unexpected continuation frame") }
                }
                size += frame.data.readableBytes
                if size <= maxMessageBytes {
                    message.writeImmutableBuffer(frame.data)
                }
                guard frame.fin else { continue }
                inMessage = false
                if size > maxMessageBytes {
                    connection.send(OutgoingMessage(ServerMessage.error(
                        GatewayError(.tooLarge, "message is \(size) bytes; the limit is \(maxMessageBytes)"), ref: nil)))
                    continue
                }
                guard isText else {
                    connection.send(OutgoingMessage(ServerMessage.error(
                        .badRequest("binary messages are not supported: send JSON as text"), ref: nil)))
                    continue
                }
                guard String(validating: message.readableBytesView, as: UTF8.self) != nil else {
                    return try await outbound.close(.dataInconsistentWithMessage, reason: "text message is not valid UTF-8")
                }
                guard rateLimiter.allow() else {
                    connection.send(OutgoingMessage(ServerMessage.error(
                        GatewayError(.tooManyRequests, "more than \(admission.limits.messagesPerSecond) messages per second; slow down"),
                        ref: nil)))
                    continue
                }
                metrics?.messageIn(.webSocket)
                await session.handle(message.readableBytesView) { reply in connection.send(OutgoingMessage(reply)) }
            }
        } catch {
            // The peer went away or broke the protocol; the library has already answered with a close frame.
        }
    }
}

/// A token bucket: `perSecond` messages a second on average, bursts of up to twice that.
struct RateLimiter {
    private let perSecond: Double
    private let capacity: Double
    private var tokens: Double
    private var last = ContinuousClock.now

    init(perSecond: Int) {
        self.perSecond = Double(perSecond)
        capacity = Double(perSecond * 2)
        tokens = capacity
    }

    mutating func allow(now: ContinuousClock.Instant = .now) -> Bool {
        let elapsed = now - last
        last = now
        tokens = min(capacity, tokens + perSecond * (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18))
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
