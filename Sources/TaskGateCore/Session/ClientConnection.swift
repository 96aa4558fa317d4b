/// The seam between the session logic and a transport: all the gateway needs of a live connection is to queue
/// an already-encoded message and to close it. WebSocket implements it today; another WebSocket stack or SSE can
/// replace or join it without touching the protocol code.
public protocol ClientConnection: Sendable {
    var id: String { get }
    /// Queues one message. Must not block: it is called while events are being published in order.
    func send(_ message: OutgoingMessage)
    /// Queues messages in order (events published together, a catch-up after a cursor); a transport may write them
    /// at once, in one syscall.
    func send(_ messages: [OutgoingMessage])
    /// Closes the connection, e.g. on shutdown or when the client cannot keep up.
    func close(reason: CloseReason)
}

extension ClientConnection {
    public func send(_ messages: [OutgoingMessage]) {
        for message in messages { send(message) }
    }
}

/// A message on its way to a client: its JSON (encoded once, whatever the number of connections) and what a
/// transport may need to frame it (SSE's `event:` and `id:`).
public struct OutgoingMessage: Sendable, Equatable {
    public let json: String
    public let type: String
    /// Set on logged events only: replies and greetings have no place in the event log.
    public let seq: UInt64?

    public init(_ message: ServerMessage) {
        json = WireJSON.encode(message)
        type = message.type
        seq = nil
    }

    public init(_ event: LoggedEvent) {
        json = event.json
        type = event.type
        seq = event.seq
    }
}

public enum CloseReason: Sendable, Equatable {
    case goingAway
    case policyViolation(String)
    case tryAgainLater(String)
}
