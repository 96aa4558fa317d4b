import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import NIOCore
import NIOHTTP1
import TaskGateCore

/// How clients prove who they are.
public enum AuthMode: String, Sendable, CaseIterable {
    /// `?uid=` is trusted: for local development (a warning is logged when listening beyond loopback).
    case dev
    /// The uid comes only from a signed token (`?token=` or `Authorization: Bearer`).
    case token
}

/// Limits that keep one client from taking the server down; each is answered with a clear error, never a crash.
public struct Limits: Sendable, Equatable {
    /// WebSocket and SSE connections one uid may hold.
    public var connectionsPerUID = 16
    /// WebSocket and SSE connections in all.
    public var connections = 10_000
    /// Messages a connection may send per second (bursts up to twice that).
    public var messagesPerSecond = 50
    /// Queued and running tasks one uid may have.
    public var tasksPerUID = TaskPool.Configuration().tasksPerUID
    /// Long-polls one uid may have waiting at once.
    public var pollsPerUID = 4
    /// What may wait to be written to one WebSocket or SSE connection (see `OutboundLimits`).
    public var outbound = OutboundLimits()

    public init() {}
}

/// Who a WebSocket, SSE or long-poll request is, and whether it may connect. Used both before the WebSocket
/// upgrade (so a refusal is a plain HTTP error) and by the routes.
public struct Admission: Sendable {
    /// The parts of a request admission looks at, whichever layer it comes from.
    struct Candidate {
        var query: [String: String]
        var header: (String) -> String?
        var isLoopback: Bool
    }

    struct Identity: Sendable {
        var uid: String
        var isAdmin: Bool
        var cursor: UInt64?
    }

    let mode: AuthMode
    let tokens: UserTokens?
    let adminToken: String?
    let allowedOrigins: [String]
    let limits: Limits
    let clients: ClientDirectory

    func identify(_ candidate: Candidate) throws(GatewayError) -> Identity {
        try checkOrigin(candidate)
        let isAdmin = Self.isAdmin(candidate, adminToken: adminToken, mode: mode)
        let uid: String
        switch mode {
        case .dev:
            guard let claimed = candidate.query["uid"] else { throw .badRequest("missing 'uid' query parameter") }
            uid = claimed
        case .token:
            if let token = candidate.query["token"] ?? Self.userBearer(candidate, adminToken: adminToken), let tokens {
                uid = try tokens.verify(token)
                if let claimed = candidate.query["uid"], claimed != uid {
                    throw GatewayError(.unauthorized, "'uid' does not match the token")
                }
            } else if isAdmin, let claimed = candidate.query["uid"] {
                uid = claimed  // an admin (admin token) may name the uid it listens as
            } else {
                throw GatewayError(.unauthorized, "a token is required: ?token=<signed token> (see `taskgate token`)")
            }
        }
        guard Identifier.isValidUID(uid) else {
            throw .badRequest("'uid' must be 1-128 characters of A-Z a-z 0-9 . _ : @ -")
        }
        var cursor: UInt64?
        if let text = candidate.query["cursor"] {
            guard let value = UInt64(text) else { throw .badRequest("'cursor' must be a non-negative whole number") }
            cursor = value
        }
        return Identity(uid: uid, isAdmin: isAdmin, cursor: cursor)
    }

    /// A new WebSocket or SSE connection must fit the connection limits; its place is held at once (see
    /// `ClientDirectory.reserveConnection`). Returns the connection's id.
    func admitConnection(uid: String) throws(GatewayError) -> String {
        try clients.reserveConnection(uid: uid, maxPerUID: limits.connectionsPerUID, maxTotal: limits.connections)
    }

    /// Browsers send `Origin`; only the page's own origin, localhost, and configured origins may connect. Clients
    /// that are not browsers send none and are not affected.
    func checkOrigin(_ candidate: Candidate) throws(GatewayError) {
        guard let origin = candidate.header("origin"), !allowedOrigins.contains("*") else { return }
        if allowedOrigins.contains(origin) { return }
        let host = URLComponents(string: origin)?.host
        if let host, ["localhost", "127.0.0.1", "::1", "[::1]"].contains(host) { return }
        if let requestHost = candidate.header("host"), let originHost = URLComponents(string: origin),
            Self.authority(originHost) == requestHost.lowercased()
        {
            return
        }
        throw GatewayError(.forbidden, "origin '\(origin)' is not allowed (see --allowed-origin)")
    }

    private static func authority(_ url: URLComponents) -> String {
        let host = url.host?.lowercased() ?? ""
        let defaultPort = url.scheme == "https" ? 443 : 80
        guard let port = url.port, port != defaultPort else { return host }
        return "\(host):\(port)"
    }

    /// With an admin token, only its bearer is admin. Without one, `?admin=1` from loopback is a convenience of dev
    /// mode only: in token mode every identity comes from a token (behind a reverse proxy every client is loopback).
    static func isAdmin(_ candidate: Candidate, adminToken: String?, mode: AuthMode) -> Bool {
        if let adminToken {
            guard let presented = bearer(candidate) else { return false }
            return AdminAuthenticator.constantTimeEquals(presented, adminToken)
        }
        return mode == .dev && candidate.isLoopback && candidate.query["admin"] == "1"
    }

    static func bearer(_ candidate: Candidate) -> String? {
        AdminAuthenticator.bearerToken(fromHeader: candidate.header("authorization"))
    }

    /// A bearer that is not the admin token is a user token.
    static func userBearer(_ candidate: Candidate, adminToken: String?) -> String? {
        guard let presented = bearer(candidate) else { return nil }
        if let adminToken, AdminAuthenticator.constantTimeEquals(presented, adminToken) { return nil }
        return presented
    }
}

extension Admission.Candidate {
    /// An upgrade request as the channel sees it, before any router.
    init(head: HTTPRequestHead, remote: SocketAddress?) {
        var query: [String: String] = [:]
        for (key, value) in URI(head.uri).queryParameters { query[String(key)] = String(value) }
        self.init(query: query, header: { head.headers[$0].first }, isLoopback: GatewayRequestContext.isLoopback(remote))
    }

    init(request: Request, context: GatewayRequestContext) {
        var query: [String: String] = [:]
        for (key, value) in request.uri.queryParameters { query[String(key)] = String(value) }
        self.init(
            query: query,
            header: { name in HTTPField.Name(name).flatMap { request.headers[$0] } },
            isLoopback: context.isLoopback)
    }
}
