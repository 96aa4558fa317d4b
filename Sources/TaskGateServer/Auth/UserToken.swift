import Crypto
import Foundation
import TaskGateCore

/// Signed user identities: a JWT (HS256) whose `sub` is the uid and `exp` its expiry, minted by the application's
/// backend with a secret it shares with TaskGate (`taskgate token UID` mints one too). In token mode the uid comes
/// only from such a token, so nobody can act as another user by editing `?uid=`.
public struct UserTokenSigner: Sendable {
    private let key: SymmetricKey

    public init(secret: String) {
        key = SymmetricKey(data: Data(secret.utf8))
    }

    public struct Claims: Codable, Sendable, Equatable {
        public var sub: String
        public var exp: Int64
        public var iat: Int64?
        public var nbf: Int64?
    }

    public func mint(uid: String, validFor lifetime: Duration, now: Date = Date()) -> String {
        let issued = Int64(now.timeIntervalSince1970)
        let claims = Claims(sub: uid, exp: issued + lifetime.components.seconds, iat: issued, nbf: nil)
        let header = Self.base64URL(Data(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
        let payload = Self.base64URL(try! JSONEncoder().encode(claims))  // four plain fields: cannot fail
        let signingInput = "\(header).\(payload)"
        return "\(signingInput).\(Self.base64URL(Data(HMAC<SHA256>.authenticationCode(for: Data(signingInput.utf8), using: key))))"
    }

    /// The uid a valid token names; `401` for anything else, saying what is wrong.
    public func verify(_ token: String, now: Date = Date()) throws(GatewayError) -> String {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerData = Self.decodeBase64URL(parts[0]), let payloadData = Self.decodeBase64URL(parts[1]),
            let signature = Self.decodeBase64URL(parts[2])
        else { throw GatewayError(.unauthorized, "malformed token (expected a JWT: header.payload.signature)") }
        struct Header: Decodable { var alg: String }
        guard let header = try? JSONDecoder().decode(Header.self, from: headerData), header.alg == "HS256" else {
            throw GatewayError(.unauthorized, "token must be signed with HS256")
        }
        let signingInput = Data("\(parts[0]).\(parts[1])".utf8)
        // A constant-time comparison: `isValidAuthenticationCode` does not stop at the first differing byte.
        guard HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: signingInput, using: key) else {
            throw GatewayError(.unauthorized, "bad token signature")
        }
        guard let claims = try? JSONDecoder().decode(Claims.self, from: payloadData) else {
            throw GatewayError(.unauthorized, "token claims need 'sub' (the uid) and 'exp'")
        }
        let seconds = Int64(now.timeIntervalSince1970)
        guard claims.exp > seconds else { throw GatewayError(.unauthorized, "token expired") }
        if let notBefore = claims.nbf, notBefore > seconds { throw GatewayError(.unauthorized, "token not valid yet") }
        guard Identifier.isValidUID(claims.sub) else {
            throw GatewayError(.unauthorized, "token 'sub' is not a valid uid")
        }
        return claims.sub
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decodeBase64URL(_ text: Substring) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }
}
