/// The seam between the session logic and a transport: all the gateway needs of a live connection is to queue
/// an already-encoded message and to close it. WebSocket implements it today; another WebSocket stack or SSE can
/// replace or join it without touching the protocol code.
public protocol ClientConnection: Sendable {
    var id: String { get }
    /// Queues one JSON text message. Must not block: it is called while events are being published in order.
    func send(_ text: String)
    /// Closes the connection, e.g. on shutdown or when the client cannot keep up.
    func close(reason: CloseReason)
}

public enum CloseReason: Sendable, Equatable {
    case goingAway
    case policyViolation(String)
    case tryAgainLater(String)
}
