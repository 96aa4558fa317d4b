import Logging
import NIOCore
import NIOHTTP1
import TaskGateCore

/// Who may open an event stream and what goes down it: shared by the stream served on the event loop
/// (`SSEChannelHandler`, a `GET /sse` on a connection of its own) and the router's `GET /sse` (one that follows
/// other requests on a kept-alive connection), so both admit, greet and frame alike.
struct SSEEndpoint: Sendable {
    let gateway: Gateway
    let admission: Admission
    /// SSE reads no messages (commands go through `POST /poll`); its session is held to the same limits anyway.
    let inbound: InboundLimits
    let metrics: GatewayMetrics?

    static let path = "/sse"
    static let heartbeat = Duration.seconds(15)
    static let responseHeaders: [(String, String)] = [
        ("content-type", "text/event-stream"), ("cache-control", "no-store"), ("x-accel-buffering", "no"),
    ]

    /// Checks the request and takes a place among the connections; the place lapses if the stream never opens.
    /// `Last-Event-ID` (the browser's reconnect) wins over the cursor in the URL it was first opened with.
    func admit(_ candidate: Admission.Candidate) throws(GatewayError) -> (identity: Admission.Identity, connectionID: String) {
        var identity = try admission.identify(candidate)
        if let lastEventID = candidate.header("last-event-id") {
            guard let seq = UInt64(lastEventID.trimmingCharacters(in: .whitespaces)) else {
                throw GatewayError.badRequest("'Last-Event-ID' must be a seq number")
            }
            identity.cursor = seq
        }
        return (identity, try admission.admitConnection(uid: identity.uid))
    }

    /// The stream is up: the client session starts (listed, then subscribed, greeting first).
    func open(
        identity: Admission.Identity, connectionID: String, connection: any ClientConnection, remote: String?, logger: Logger
    ) -> ClientSession {
        let session = ClientSession(
            id: connectionID, uid: identity.uid, isAdmin: identity.isAdmin, transport: .sse, remote: remote,
            gateway: gateway, connection: connection, limits: inbound, logger: logger)
        session.open(cursor: identity.cursor)
        return session
    }

    /// `event:`, `id:` (the seq, for `Last-Event-ID`) and `data:` lines. Messages are compact JSON: one line.
    static func frame(_ message: OutgoingMessage) -> String {
        var frame = "event: \(message.type)\n"
        if let seq = message.seq { frame += "id: \(seq)\n" }
        frame += "data: \(message.json)\n\n"
        return frame
    }

    static let heartbeatFrame = ": heartbeat\n\n"
}
