import Foundation
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import TaskGateCore

/// `GET /ws?uid=U[&cursor=N][&admin=1]`: the WebSocket front door.
struct WebSocketRoutes {
    let gateway: Gateway
    let auth: AdminAuthenticator
    let maxMessageBytes: Int

    /// The WebSocket router: a separate one, so ordinary requests never go through upgrade matching.
    func addUpgradeRoutes(to router: Router<GatewayRequestContext>) {
        router.ws(
            "/ws",
            shouldUpgrade: { request, context in
                // A refused upgrade is answered 400 before any WebSocket exists.
                _ = try ConnectionParameters(request: request)
                return .upgrade([:])
            },
            onUpgrade: { inbound, outbound, wsContext in
                let parameters = try ConnectionParameters(request: wsContext.request)
                let isAdmin = auth.isAdmin(request: wsContext.request, context: wsContext.requestContext)
                await serve(
                    inbound: inbound, outbound: outbound, parameters: parameters, isAdmin: isAdmin,
                    remote: wsContext.requestContext.remoteDescription, logger: wsContext.logger
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
        router.get("/ws") { request, _ -> Response in
            _ = try ConnectionParameters(request: request)
            throw GatewayError.badRequest("this endpoint needs a WebSocket upgrade (Upgrade: websocket)")
        }
    }

    private func serve(
        inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, parameters: ConnectionParameters,
        isAdmin: Bool, remote: String?, logger: Logger
    ) async {
        let connection = WebSocketConnection(id: gateway.clients.makeConnectionID())
        let session = Session(uid: parameters.uid, isAdmin: isAdmin, transport: .webSocket, gateway: gateway)
        let info = ClientInfo(id: connection.id, uid: parameters.uid, transport: .webSocket, remote: remote, admin: isAdmin)
        gateway.clients.add(info)
        logger.info("websocket connected", metadata: ["uid": .string(parameters.uid), "connection": .string(connection.id)])
        do {
            try await gateway.events.subscribe(uid: parameters.uid, connection: connection, after: parameters.cursor) {
                latestSeq, reset in
                var hello = ServerMessage(type: "hello", code: 200, info: "connected")
                hello.uid = parameters.uid
                hello.transport = Transport.webSocket.rawValue
                hello.seq = latestSeq
                hello.admin = isAdmin
                hello.reset = reset
                return hello
            }
        } catch {
            // The user's events could not be loaded: say so and close, rather than serve a log with holes.
            logger.error("could not load events", metadata: ["uid": .string(parameters.uid), "error": "\(error)"])
            connection.send(OutgoingMessage(ServerMessage.error(GatewayError(.unavailable, "events unavailable; try again"), ref: nil)))
            connection.close(reason: .tryAgainLater("events unavailable"))
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await connection.runWriter(outbound) }
            await readMessages(inbound: inbound, outbound: outbound, session: session, connection: connection)
            connection.finish()
        }
        gateway.events.unsubscribe(uid: parameters.uid, connectionID: connection.id)
        gateway.clients.remove(id: connection.id)
        logger.info("websocket disconnected", metadata: ["uid": .string(parameters.uid), "connection": .string(connection.id)])
    }

    /// Reads whole messages frame by frame, so that a message over the limit is answered with `413 too_large` and
    /// the connection stays open (the library's message reader would close it).
    private func readMessages(
        inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, session: Session, connection: WebSocketConnection
    ) async {
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
                await session.handle(message.readableBytesView) { reply in connection.send(OutgoingMessage(reply)) }
            }
        } catch {
            // The peer went away or broke the protocol; the library has already answered with a close frame.
        }
    }
}

/// The query of a WebSocket or long-poll request: who the client is and where it resumes.
struct ConnectionParameters {
    var uid: String
    var cursor: UInt64?

    init(request: Request) throws(GatewayError) {
        let query = request.uri.queryParameters
        guard let uid = query["uid"].map(String.init) else { throw .badRequest("missing 'uid' query parameter") }
        guard Identifier.isValidUID(uid) else {
            throw .badRequest("'uid' must be 1-128 characters of A-Z a-z 0-9 . _ : @ -")
        }
        self.uid = uid
        if let text = query["cursor"] {
            guard let cursor = UInt64(text) else { throw .badRequest("'cursor' must be a non-negative whole number") }
            self.cursor = cursor
        }
    }
}
