import Foundation
import Hummingbird
import TaskGateCore

/// Guards the REST admin API (admins on WebSocket, SSE and long-poll are decided by `Admission`). With a token
/// configured, only `Authorization: Bearer <token>` passes; without one, only a loopback client does (the Swoole server let
/// anyone reload; we do not).
struct AdminAuthenticator: Sendable {
    let token: String?
    /// Without a token, loopback clients are admin: in dev mode only (token mode means tokens only).
    let loopbackIsAdmin: Bool

    /// For the REST admin API: throws 401 (bad or missing token) or 403 (no token configured, not loopback).
    func authorize(_ request: Request, context: GatewayRequestContext) throws(GatewayError) {
        if let token {
            guard let presented = Self.bearerToken(request) else {
                throw GatewayError(.unauthorized, "missing 'Authorization: Bearer <admin token>' header")
            }
            guard Self.constantTimeEquals(presented, token) else {
                throw GatewayError(.unauthorized, "wrong admin token")
            }
        } else if !loopbackIsAdmin {
            throw GatewayError(.forbidden, "token mode without an admin token: the admin API is off (start with --admin-token)")
        } else if !context.isLoopback {
            throw GatewayError(.forbidden, "no admin token is configured, so the admin API answers loopback clients only")
        }
    }

    static func bearerToken(_ request: Request) -> String? {
        bearerToken(fromHeader: request.headers[.authorization])
    }

    /// The token of an `Authorization: Bearer <token>` header; the one parser for admin and user tokens.
    static func bearerToken(fromHeader header: String?) -> String? {
        guard let header else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        return parts[1].trimmingCharacters(in: .whitespaces)
    }

    /// Compares without an early exit, so response time does not reveal how much of a guess was right.
    static func constantTimeEquals(_ lhs: String, _ rhs: String) -> Bool {
        let a = Array(lhs.utf8)
        let b = Array(rhs.utf8)
        var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
        for index in 0..<max(a.count, b.count) {
            let x = index < a.count ? a[index] : 0
            let y = index < b.count ? b[index] : 0
            difference |= x ^ y
        }
        return difference == 0 && a.count == b.count
    }
}
