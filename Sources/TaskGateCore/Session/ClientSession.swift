import DequeModule
import Logging
import Synchronization

/// What one connection may send: the same rules for every transport that reads messages off a connection.
public struct InboundLimits: Sendable, Equatable {
    /// Largest message the gateway reads (after inflating); larger ones get a `413` reply.
    public var maxMessageBytes: Int
    public var messagesPerSecond: Int

    public init(maxMessageBytes: Int, messagesPerSecond: Int) {
        self.maxMessageBytes = maxMessageBytes
        self.messagesPerSecond = messagesPerSecond
    }

    public func tooFast() -> GatewayError {
        GatewayError(.tooManyRequests, "more than \(messagesPerSecond) messages per second; slow down")
    }
}

/// One connected client for its whole life, whatever carries its bytes (WebSocket, SSE), as centrifuge's `Client`:
/// it is listed in the client directory, subscribed to its uid's events (greeting and replay first), reads its
/// messages under the inbound limits and answers each in order, and leaves the log and the list when the transport
/// says it is gone. The transport only moves bytes: it hands over what arrived (`receive`) and implements
/// `ClientConnection` for what goes out.
///
/// Messages that need the pool or the store are handled by a Swift task that exists only while such messages wait,
/// so an idle connection holds no task at all.
public final class ClientSession: Sendable {
    public let id: String
    public let commands: Session
    public let connection: any ClientConnection
    private let remote: String?
    private let limits: InboundLimits
    private let logger: Logger

    private struct State {
        var inbox = Deque<Result<ClientMessage, ClientMessage.DecodeFailure>>()
        /// A task is handling messages; new ones wait behind it. Set from the start: messages that arrive before
        /// the greeting is out wait for the subscription, which runs as the first "busy" task.
        var busy = true
        /// The event log knows this connection; whoever sees `gone` second unsubscribes.
        var subscribed = false
        var gone = false
        var rate: RateLimiter
    }
    private let state: Mutex<State>

    public var uid: String { commands.uid }
    private var gateway: Gateway { commands.gateway }

    public init(
        id: String, uid: String, isAdmin: Bool, transport: Transport, remote: String?, gateway: Gateway,
        connection: any ClientConnection, limits: InboundLimits, logger: Logger
    ) {
        self.id = id
        commands = Session(uid: uid, isAdmin: isAdmin, transport: transport, gateway: gateway)
        self.connection = connection
        self.remote = remote
        self.limits = limits
        self.logger = logger
        state = Mutex(State(rate: RateLimiter(perSecond: limits.messagesPerSecond)))
    }

    /// Lists the client and subscribes it to its events after `cursor`, then handles what arrived meanwhile.
    public func open(cursor: UInt64?) {
        let uid = uid, isAdmin = commands.isAdmin, transport = commands.transport
        gateway.clients.add(ClientInfo(id: id, uid: uid, transport: transport, remote: remote, admin: isAdmin))
        Task {
            do {
                try await gateway.events.subscribe(uid: uid, connection: connection, after: cursor) { head, reset in
                    .hello(uid: uid, transport: transport, head: head, admin: isAdmin, reset: reset)
                }
                let gone = state.withLock { state in
                    state.subscribed = true
                    return state.gone
                }
                if gone { gateway.events.unsubscribe(uid: uid, connectionID: id) }
            } catch {
                // The user's events could not be loaded: say so and close, rather than serve a log with holes.
                logger.error("could not load events", metadata: ["uid": .string(uid), "error": "\(error)"])
                connection.send(OutgoingMessage(ServerMessage.error(GatewayError(.unavailable, "events unavailable; try again"), ref: nil)))
                connection.close(reason: .tryAgainLater("events unavailable"))
            }
            await drain()
        }
    }

    /// One whole message off the wire, `size` bytes before any inflating. A message that needs neither the pool nor
    /// the store (and a refusal) is answered on the caller's thread when nothing earlier still waits for its answer,
    /// so replies keep their order; the rest is queued. Returns whether the message passed the inbound limits.
    @discardableResult
    public func receive(_ bytes: some Collection<UInt8>, size: Int, isText: Bool) -> Bool {
        let limit = limits.maxMessageBytes
        let rejection: GatewayError?
        let (allowed, idle) = state.withLock { state in
            (size <= limit && isText ? state.rate.allow() : true, !state.busy)
        }
        if size > limit {
            rejection = GatewayError(.tooLarge, "message is \(size) bytes; the limit is \(limit)")
        } else if !isText {
            rejection = .badRequest("binary messages are not supported: send JSON as text")
        } else if !allowed {
            rejection = limits.tooFast()
        } else {
            rejection = nil
        }
        let outcome: Result<ClientMessage, ClientMessage.DecodeFailure> =
            if let rejection { .failure(.init(ref: nil, error: rejection)) } else { ClientMessage.decode(bytes) }
        if idle {
            switch outcome {
            case .failure(let failure):
                connection.send(OutgoingMessage(.error(failure.error, ref: failure.ref)))
                return rejection == nil
            case .success(let message):
                if let answer = commands.immediateAnswer(message) {
                    connection.send(OutgoingMessage(answer))
                    return true
                }
            }
        }
        enqueue(outcome)
        return rejection == nil
    }

    private func enqueue(_ message: Result<ClientMessage, ClientMessage.DecodeFailure>) {
        let start = state.withLock { state -> Bool in
            state.inbox.append(message)
            if state.busy { return false }
            state.busy = true
            return true
        }
        if start { Task { await drain() } }
    }

    private func drain() async {
        while let next = state.withLock({ state -> Result<ClientMessage, ClientMessage.DecodeFailure>? in
            if let next = state.inbox.popFirst() { return next }
            state.busy = false
            return nil
        }) {
            switch next {
            case .success(let message):
                await commands.handle(message) { reply in connection.send(OutgoingMessage(reply)) }
            case .failure(let failure):
                connection.send(OutgoingMessage(ServerMessage.error(failure.error, ref: failure.ref)))
            }
        }
    }

    /// The transport is gone: leave the event log and the client list.
    public func closed() {
        let subscribed = state.withLock { state in
            state.gone = true
            state.inbox.removeAll()
            return state.subscribed
        }
        if subscribed { gateway.events.unsubscribe(uid: uid, connectionID: id) }
        gateway.clients.remove(id: id)
    }
}
