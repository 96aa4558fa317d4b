import HummingbirdWebSocket
import NIOWebSocket
import TaskGateCore

/// A WebSocket behind the `ClientConnection` seam: `send` only queues, and one writer task per connection drains
/// the queue in order, so publishing an event never waits for a socket.
final class WebSocketConnection: ClientConnection {
    enum Outbound: Sendable {
        case text(String)
        case close(CloseReason)
    }

    let id: String
    private let queue: AsyncStream<Outbound>.Continuation
    private let stream: AsyncStream<Outbound>

    init(id: String) {
        self.id = id
        (stream, queue) = AsyncStream<Outbound>.makeStream()
    }

    func send(_ message: OutgoingMessage) {
        queue.yield(.text(message.json))
    }

    func close(reason: CloseReason) {
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
                    try await outbound.write(.text(text))
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
