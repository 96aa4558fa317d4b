import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import TaskGateCore

/// `GET /sse?uid=U[&cursor=N]`: Server-Sent Events for browsers that cannot use WebSocket (a proxy in the way)
/// but can hold a streaming response. Same events, same order as WebSocket and long-poll; `id:` is the seq, so the
/// browser's automatic reconnect resumes with `Last-Event-ID`. Commands go through `POST /poll`.
struct SSERoutes {
    let gateway: Gateway
    let admission: Admission
    /// SSE reads no messages (commands go through `POST /poll`); its session is held to the same limits anyway.
    let inbound: InboundLimits
    static let heartbeat = Duration.seconds(15)

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/sse") { request, context -> Response in
            var identity = try admission.identify(.init(request: request, context: context))
            if let lastEventID = request.headers[HTTPField.Name("Last-Event-ID")!] {
                // The browser's reconnect: it wins over the cursor in the URL it was first opened with.
                guard let seq = UInt64(lastEventID.trimmingCharacters(in: .whitespaces)) else {
                    throw GatewayError.badRequest("'Last-Event-ID' must be a seq number")
                }
                identity.cursor = seq
            }
            let resume = identity
            // Last: the place it holds lapses if the stream never starts.
            let connectionID = try admission.admitConnection(uid: identity.uid)
            let outbound = admission.limits.outbound
            let channel = context.channel
            let remote = context.remoteDescription
            let logger = context.logger
            return Response(
                status: .ok,
                headers: [.contentType: "text/event-stream", .cacheControl: "no-store", .init("X-Accel-Buffering")!: "no"],
                body: .init { writer in
                    try await stream(
                        to: &writer, request: request, identity: resume,
                        connection: SSEConnection(id: connectionID, outbound: outbound, channel: channel, logger: logger), remote: remote,
                        logger: logger)
                }
            )
        }
    }

    private func stream(
        to writer: inout any ResponseBodyWriter, request: Request, identity: Admission.Identity, connection: SSEConnection,
        remote: String?, logger: Logger
    ) async throws {
        let session = ClientSession(
            id: connection.id, uid: identity.uid, isAdmin: identity.isAdmin, transport: .sse, remote: remote,
            gateway: gateway, connection: connection, limits: inbound, logger: logger)
        session.open(cursor: identity.cursor)
        defer { session.closed() }
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
                    connection.written(frame)
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

/// An SSE response behind the `ClientConnection` seam: messages become `event:`/`id:`/`data:` frames. Frames wait
/// in a stream until the response writer (which waits while the socket cannot take more) has sent them; what waits
/// is held to the outbound limits, and a client that does not read is cut off like a WebSocket one (it resumes
/// with `Last-Event-ID`).
final class SSEConnection: ClientConnection {
    let id: String
    let frames: AsyncStream<String>
    private let sink: AsyncStream<String>.Continuation
    private let backlog: Mutex<OutboundBacklog>
    /// Set once the client is cut off: nothing more is queued.
    private let overflowed = Atomic<Bool>(false)
    private let channel: any Channel
    private let logger: Logger

    init(id: String, outbound: OutboundLimits, channel: any Channel, logger: Logger) {
        self.id = id
        self.channel = channel
        self.logger = logger
        backlog = Mutex(OutboundBacklog(limits: outbound))
        (frames, sink) = AsyncStream<String>.makeStream()
    }

    func send(_ message: OutgoingMessage) {
        var frame = "event: \(message.type)\n"
        if let seq = message.seq { frame += "id: \(seq)\n" }
        frame += "data: \(message.json)\n\n"
        enqueue(frame)
    }

    func sendComment(_ text: String) {
        enqueue(": \(text)\n\n")
    }

    private func enqueue(_ frame: String) {
        guard !overflowed.load(ordering: .relaxed) else { return }
        let size = frame.utf8.count
        guard backlog.withLock({ $0.admit(bytes: size) }) else {
            guard !overflowed.exchange(true, ordering: .relaxed) else { return }
            let (messages, bytes) = backlog.withLock { ($0.messages, $0.bytes) }
            logger.warning(
                "closing an SSE stream that does not read",
                metadata: ["connection": .string(id), "messages": "\(messages)", "bytes": "\(bytes)"])
            sink.finish()
            // The writer is stuck behind the socket: only closing the connection ends it and frees what waits.
            channel.close(promise: nil)
            return
        }
        sink.yield(frame)
    }

    /// The writer sent `frame`.
    func written(_ frame: String) {
        let size = frame.utf8.count
        backlog.withLock { $0.written(bytes: size) }
    }

    func close(reason: CloseReason) {
        sink.finish()
    }

    func finish() {
        sink.finish()
    }
}
