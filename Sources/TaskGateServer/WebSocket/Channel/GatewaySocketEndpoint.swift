import Logging
import NIOCore
import TaskGateCore

/// What `/ws` runs on a channel-handler WebSocket: the gateway session of one admitted user.
struct GatewaySocketEndpoint: Sendable {
    let gateway: Gateway
    let identity: Admission.Identity
    /// Reserved by the admission gate; the socket takes up that place when it opens.
    let connectionID: String
    let remote: String?
    let logger: Logger

    let limits: InboundLimits

    /// The socket is up: the client session starts (listed, then subscribed, greeting first).
    func open(socket: WebSocketChannelHandler, eventLoop: any EventLoop) -> ClientSession {
        let session = ClientSession(
            id: connectionID, uid: identity.uid, isAdmin: identity.isAdmin, transport: .webSocket, remote: remote,
            gateway: gateway, connection: EventLoopConnection(id: connectionID, stream: socket, eventLoop: eventLoop),
            limits: limits, logger: logger)
        logger.info("websocket connected", metadata: ["uid": .string(identity.uid), "connection": .string(connectionID)])
        session.open(cursor: identity.cursor)
        return session
    }

    func closed(_ session: ClientSession) {
        session.closed()
        logger.info("websocket disconnected", metadata: ["uid": .string(identity.uid), "connection": .string(session.id)])
    }
}
