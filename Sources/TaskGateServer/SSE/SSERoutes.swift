import HTTPTypes
import Hummingbird
import Logging
import ServiceLifecycle
import TaskGateCore

/// `GET /sse?uid=U[&cursor=N]`: Server-Sent Events for browsers that cannot use WebSocket (a proxy in the way)
/// but can hold a streaming response. Same events, same order as WebSocket and long-poll; `id:` is the seq, so the
/// browser's automatic reconnect resumes with `Last-Event-ID`. Commands go through `POST /poll`.
struct SSERoutes {
    let gateway: Gateway
    let admission: Admission
    static let heartbeat = Duration.seconds(15)

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/sse") { request, context -> Response in
            var identity = try admission.identify(.init(request: request, context: context))
            try admission.admitConnection(uid: identity.uid)
            if let lastEventID = request.headers[HTTPField.Name("Last-Event-ID")!] {
                // The browser's reconnect: it wins over the cursor in the URL it was first opened with.
                guard let seq = UInt64(lastEventID.trimmingCharacters(in: .whitespaces)) else {
                    throw GatewayError.badRequest("'Last-Event-ID' must be a seq number")
                }
                identity.cursor = seq
            }
            let resume = identity
            let remote = context.remoteDescription
            let logger = context.logger
            return Response(
                status: .ok,
                headers: [.contentType: "text/event-stream", .cacheControl: "no-store", .init("X-Accel-Buffering")!: "no"],
                body: .init { writer in
                    try await stream(
                        to: &writer, request: request, identity: resume, remote: remote, logger: logger)
                }
            )
        }
    }

    private func stream(
        to writer: inout any ResponseBodyWriter, request: Request, identity: Admission.Identity, remote: String?, logger: Logger
    ) async throws {
        let isAdmin = identity.isAdmin
        let connection = SSEConnection(id: gateway.clients.makeConnectionID())
        gateway.clients.add(ClientInfo(id: connection.id, uid: identity.uid, transport: .sse, remote: remote, admin: isAdmin))
        defer {
            gateway.events.unsubscribe(uid: identity.uid, connectionID: connection.id)
            gateway.clients.remove(id: connection.id)
        }
        do {
            try await gateway.events.subscribe(uid: identity.uid, connection: connection, after: identity.cursor) { latestSeq, reset in
                .hello(uid: identity.uid, transport: .sse, latestSeq: latestSeq, admin: isAdmin, reset: reset)
            }
        } catch {
            logger.error("could not load events", metadata: ["uid": .string(identity.uid), "error": "\(error)"])
            connection.send(OutgoingMessage(ServerMessage.error(GatewayError(.unavailable, "events unavailable; try again"), ref: nil)))
            connection.finish()
        }
        let heartbeat = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: Self.heartbeat)
                connection.sendComment("heartbeat")
            }
        }
        defer { heartbeat.cancel() }
        // The client going away (or the server shutting down) ends the stream.
        try await request.body.consumeWithInboundCloseHandler { _ in
            try await withGracefulShutdownHandler {
                for await frame in connection.frames {
                    try await writer.write(ByteBuffer(string: frame))
                }
            } onGracefulShutdown: {
                connection.finish()
            }
        } onInboundClosed: {
            connection.finish()
        }
        try? await writer.finish(nil)
    }
}

/// An SSE response behind the `ClientConnection` seam: messages become `event:`/`id:`/`data:` frames.
final class SSEConnection: ClientConnection {
    let id: String
    let frames: AsyncStream<String>
    private let sink: AsyncStream<String>.Continuation

    init(id: String) {
        self.id = id
        (frames, sink) = AsyncStream<String>.makeStream()
    }

    func send(_ message: OutgoingMessage) {
        var frame = "event: \(message.type)\n"
        if let seq = message.seq { frame += "id: \(seq)\n" }
        frame += "data: \(message.json)\n\n"
        sink.yield(frame)
    }

    func sendComment(_ text: String) {
        sink.yield(": \(text)\n\n")
    }

    func close(reason: CloseReason) {
        sink.finish()
    }

    func finish() {
        sink.finish()
    }
}
