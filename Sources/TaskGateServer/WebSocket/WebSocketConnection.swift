import DequeModule
import HummingbirdWebSocket
import Logging
import NIOWebSocket
import Synchronization
import TaskGateCore

/// A WebSocket behind the `ClientConnection` seam: `send` only queues, so publishing an event never waits for a
/// socket, and the queue is written in order by a drain task that exists only while there is something to write —
/// an idle connection holds no writer task (a long-lived task per connection keeps the runtime's slabs of the
/// deepest call chain it ever ran). A client that stops reading cannot make the queue grow without bound: past
/// `outboundLimit` waiting messages the connection is closed (1013) and the client resumes from its cursor, its
/// events being in the log.
final class WebSocketConnection: ClientConnection {
    enum Outbound: Sendable {
        case text(String)
        case close(CloseReason)
    }

    private struct State {
        var queue = Deque<Outbound>()
        /// Text messages queued and not yet written.
        var pending = 0
        /// No more messages are accepted (closed, or closing for not reading); queued text is dropped.
        var closing = false
        /// The reader is done: nothing more will be queued.
        var finished = false
        /// A drain task is running.
        var draining = false
        /// Set once the WebSocket is up; until then messages wait in the queue.
        var writer: WebSocketOutboundWriter?
        /// A close frame went out or the socket failed: nothing more is written.
        var stopped = false
        var idleWaiters: [CheckedContinuation<Void, Never>] = []
    }

    let id: String
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
        self.outboundLimit = outboundLimit
        self.logger = logger
        self.abort = abort
        self.metrics = metrics
    }

    func send(_ message: OutgoingMessage) {
        let (verdict, writer) = state.withLock { state -> (Verdict, WebSocketOutboundWriter?) in
            if state.closing || state.finished { return (.dropped, nil) }
            if state.pending >= outboundLimit {
                state.closing = true
                state.queue.append(.close(.tryAgainLater("you are not reading: reconnect with your cursor")))
                return (.overflow, Self.claimDrain(&state))
            }
            state.pending += 1
            state.queue.append(.text(message.json))
            return (.queued, Self.claimDrain(&state))
        }
        if let writer { startDrain(writer) }
        if verdict == .overflow {
            logger.warning("closing a connection that does not read", metadata: ["connection": .string(id), "queued": "\(outboundLimit)"])
            // The close frame waits behind what is being written; if the client does not read it soon, drop the
            // connection.
            let abort = self.abort
            Task {
                try? await Task.sleep(for: .seconds(2))
                abort()
            }
        }
    }

    private enum Verdict { case queued, overflow, dropped }

    func close(reason: CloseReason) {
        let writer = state.withLock { state -> WebSocketOutboundWriter? in
            guard !state.closing else { return nil }
            state.closing = true
            state.queue.append(.close(reason))
            return Self.claimDrain(&state)
        }
        if let writer { startDrain(writer) }
    }

    /// The WebSocket is up: what was queued before goes out now.
    func attach(_ writer: WebSocketOutboundWriter) {
        let claimed = state.withLock { state -> WebSocketOutboundWriter? in
            state.writer = writer
            return Self.claimDrain(&state)
        }
        if let claimed { startDrain(claimed) }
    }

    /// No more messages: returns once what is queued has been written (or cannot be).
    func finish() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let idle = state.withLock { state -> Bool in
                state.finished = true
                if state.draining {
                    state.idleWaiters.append(continuation)
                    return false
                }
                return true
            }
            if idle { continuation.resume() }
        }
    }

    /// Takes the right to drain when there is something to write and nobody is writing it.
    private static func claimDrain(_ state: inout State) -> WebSocketOutboundWriter? {
        guard !state.draining, !state.stopped, !state.queue.isEmpty, let writer = state.writer else { return nil }
        state.draining = true
        return writer
    }

    private func startDrain(_ writer: WebSocketOutboundWriter) {
        Task { await self.drain(writer) }
    }

    /// Writes queued messages in order until the queue is empty, the socket fails, or a close is written.
    private func drain(_ writer: WebSocketOutboundWriter) async {
        while true {
            let next = state.withLock { state -> (item: Outbound?, skip: Bool, waiters: [CheckedContinuation<Void, Never>]) in
                if !state.stopped, let item = state.queue.popFirst() {
                    if case .text = item { state.pending -= 1 }
                    return (item, state.closing, [])
                }
                state.draining = false
                let waiters = state.idleWaiters
                state.idleWaiters = []
                return (nil, false, waiters)
            }
            guard let item = next.item else {
                for waiter in next.waiters { waiter.resume() }
                return
            }
            do {
                switch item {
                case .text(let text):
                    // Once the connection is being closed, what is queued is not sent: the events are in the log for
                    // the client's resume.
                    if next.skip { continue }
                    try await writer.write(.text(text))
                    metrics?.messageOut(.webSocket)
                case .close(let reason):
                    let (code, text) = Self.closeFrame(for: reason)
                    state.withLock { $0.stopped = true }
                    try await writer.close(code, reason: text)
                }
            } catch {
                // The socket is gone; events stay in the user's log for a resume.
                state.withLock { state in
                    state.stopped = true
                    state.queue.removeAll()
                    state.pending = 0
                }
            }
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
