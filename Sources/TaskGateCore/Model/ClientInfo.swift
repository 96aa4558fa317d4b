import Foundation

public enum Transport: String, Sendable, Codable {
    case webSocket = "websocket"
    case longPoll = "long-poll"
    case sse
}

/// A connected client as `clients` and `GET /api/v1/clients` list it.
public struct ClientInfo: Sendable, Codable, Equatable {
    public var id: String
    public var uid: String
    public var transport: Transport
    public var connectedAt: Date
    public var remote: String?
    public var admin: Bool
    /// The node it is connected to (a cluster; `nil` on a single node).
    public var node: String?

    public init(
        id: String, uid: String, transport: Transport, connectedAt: Date = Date(), remote: String?, admin: Bool, node: String? = nil
    ) {
        self.id = id
        self.uid = uid
        self.transport = transport
        self.connectedAt = connectedAt
        self.remote = remote
        self.admin = admin
        self.node = node
    }

    enum CodingKeys: String, CodingKey { case id, uid, transport, connectedAt, remote, admin, node }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(all: [
            .id: id, .uid: uid, .transport: transport, .connectedAt: connectedAt, .remote: remote, .admin: admin,
            .node: node
        ])
    }
}
