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

    /// The socket is up: the client joins the client list and its event log (greeting first).
    func open(socket: WebSocketChannelHandler, eventLoop: any EventLoop) -> SocketConnection {
        let connection = SocketConnection(
            id: connectionID,
            session: Session(uid: identity.uid, isAdmin: identity.isAdmin, transport: .webSocket, gateway: gateway),
            socket: socket, eventLoop: eventLoop, logger: logger)
        gateway.clients.add(
            ClientInfo(id: connection.id, uid: identity.uid, transport: .webSocket, remote: remote, admin: identity.isAdmin))
        logger.info("websocket connected", metadata: ["uid": .string(identity.uid), "connection": .string(connection.id)])
        connection.start(cursor: identity.cursor, isAdmin: identity.isAdmin)
        return connection
    }

    func closed(_ connection: SocketConnection) {
        connection.disconnected()
        logger.info("websocket disconnected", metadata: ["uid": .string(identity.uid), "connection": .string(connection.id)])
    }
}
