import HummingbirdWebSocket
import Logging
import NIOWebSocket
import Synchronization
import TaskGateCore

/// A WebSocket behind the `ClientConnection` seam: `send` only queues, and one writer task per connection drains
/// the queue in order, so publishing an event never waits for a socket. A client that stops reading cannot make
/// the queue grow without bound: past `outboundLimit` waiting messages the connection is closed (1013) and the
/// client resumes from its cursor, its events being in the log.
final class WebSocketConnection: ClientConnection {
    enum Outbound: Sendable {
        case text(String)
        case close(CloseReason)
    }

    private struct State {
        var pending = 0
        var closing = false
    }

    let id: String
    private let queue: AsyncStream<Outbound>.Continuation
    private let stream: AsyncStream<Outbound>
    private let outboundLimit: Int
    private let state = Mutex(State())
    private let logger: Logger
    /// Drops the TCP connection: the last resort for a client that reads nothing, not even a close frame.
    private let abort: @Sendable () -> Void

    private let metrics: GatewayMetrics?

    init(
        id: String, outboundLimit: Int = .max, logger: Logger = Logger(label: "taskgate"), abort: @escaping @Sendable () -> Void = {},
        metrics: GatewayMetrics? = nil
    ) {
        self.id = id
        self.metrics = metrics
        self.outboundLimit = outboundLimit
        self.logger = logger
        self.abort = abort
        (stream, queue) = AsyncStream<Outbound>.makeStream()
    }

    func send(_ message: OutgoingMessage) {
        let verdict = state.withLock { state -> (accept: Bool, overflow: Bool) in
            if state.closing { return (false, false) }
            if state.pending >= outboundLimit {
                state.closing = true
                return (false, true)
            }
            state.pending += 1
            return (true, false)
        }
        if verdict.accept {
            queue.yield(.text(message.json))
        } else if verdict.overflow {
            logger.warning("closing a connection that does not read", metadata: ["connection": .string(id), "queued": "\(outboundLimit)"])
            queue.yield(.close(.tryAgainLater("you are not reading: reconnect with your cursor")))
            queue.finish()
            // The close frame waits behind what is queued; if the client does not read it soon, drop the connection.
            let abort = self.abort
            Task {
                try? await Task.sleep(for: .seconds(2))
                abort()
            }
        }
    }

    func close(reason: CloseReason) {
        state.withLock { $0.closing = true }
        queue.yield(.close(reason))
        queue.finish()
    }

    /// No more messages: the writer ends once it has sent what is queued.
    func finish() {
        queue.finish()
    }

    /// Writes queued messages until the queue finishes, the socket fails, or a close is asked for.
    func runWriter(_ outbound: WebSocketOutboundWriter) async {
        do {
            for await item in stream {
                switch item {
                case .text(let text):
                    // Once the connection is being closed for not reading, what is queued is not sent: the events
                    // are in the log for the client's resume.
                    if state.withLock({ $0.closing }) { continue }
                    try await outbound.write(.text(text))
                    metrics?.messageOut(.webSocket)
                    state.withLock { $0.pending -= 1 }
                case .close(let reason):
                    let (code, text) = Self.closeFrame(for: reason)
                    try await outbound.close(code, reason: text)
                    return
                }
            }
        } catch {
            // The socket is gone; events stay in the user's log for a resume.
        }
    }

    static func closeFrame(for reason: CloseReason) -> (WebSocketErrorCode, String?) {
        switch reason {
        case .goingAway: (.goingAway, "server shutting down")
        case .policyViolation(let text): (.policyViolation, text)
        case .tryAgainLater(let text): (.unknown(1013), text)
        }
    }
}
