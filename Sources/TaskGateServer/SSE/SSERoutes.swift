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
///
/// A stream that opens its connection is served on the event loop (`SSEChannelHandler`); this route serves one
/// that follows other requests on a kept-alive connection, as a streaming response.
struct SSERoutes {
    let endpoint: SSEEndpoint
    let outbound: OutboundLimits

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.get(RouterPath(SSEEndpoint.path)) { request, context -> Response in
            // Last: the place it holds lapses if the stream never starts.
            let (identity, connectionID) = try endpoint.admit(.init(request: request, context: context))
            let connection = SSEConnection(id: connectionID, outbound: outbound, channel: context.channel, logger: context.logger)
            let remote = context.remoteDescription
            let logger = context.logger
            var headers = HTTPFields()
            for (name, value) in SSEEndpoint.responseHeaders { headers[HTTPField.Name(name)!] = value }
            return Response(
                status: .ok, headers: headers,
                body: .init { writer in
                    try await stream(to: &writer, request: request, identity: identity, connection: connection, remote: remote, logger: logger)
                }
            )
        }
    }

    private func stream(
        to writer: inout any ResponseBodyWriter, request: Request, identity: Admission.Identity, connection: SSEConnection,
        remote: String?, logger: Logger
    ) async throws {
        let session = endpoint.open(identity: identity, connectionID: connection.id, connection: connection, remote: remote, logger: logger)
        defer { session.closed() }
        let heartbeat = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: SSEEndpoint.heartbeat)
                connection.enqueue(SSEEndpoint.heartbeatFrame)
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

/// The router's SSE response behind the `ClientConnection` seam: messages become `SSEEndpoint.frame`s. Frames wait
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
        enqueue(SSEEndpoint.frame(message))
    }

    func enqueue(_ frame: String) {
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
