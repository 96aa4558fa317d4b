import Foundation
import JWTKit
import Synchronization
import TaskGateCore

/// Where user tokens' keys come from and what their claims must say (token mode).
public struct UserTokenSettings: Sendable, Equatable {
    /// A secret shared with the backend, for HMAC tokens (at least as many bytes as the hash: see `HMACAlgorithm`).
    public var secret: String?
    /// The algorithm tokens signed with `secret` use.
    public var secretAlgorithm = HMACAlgorithm.hs256
    /// PEM public keys and JWKS files, read at start and again on reload. A PEM key's `kid` is its file's name without
    /// the extension; `ALG:path` picks another algorithm for an RSA key (`PS256:keys/backend.pem`).
    public var keyFiles: [String] = []
    /// When set, a token's `iss` must be this.
    public var issuer: String?
    /// When set, a token's `aud` must include this.
    public var audience: String?
    /// Clock skew allowed on `exp` and `nbf`.
    public var leeway = Duration.seconds(30)

    public init() {}

    public var hasKeys: Bool { secret != nil || !keyFiles.isEmpty }

    public enum HMACAlgorithm: String, Sendable, CaseIterable {
        case hs256 = "HS256", hs384 = "HS384", hs512 = "HS512"

        /// RFC 7518 §3.2: an HMAC key must be at least as long as the hash output (32 bytes for HS256).
        public var minimumSecretBytes: Int {
            switch self {
            case .hs256: 32
            case .hs384: 48
            case .hs512: 64
            }
        }

        /// Why a secret cannot be used with this algorithm, if it cannot.
        public func problem(with secret: String) -> String? {
            secret.utf8.count >= minimumSecretBytes ? nil
                : "a secret for \(rawValue) must be at least \(minimumSecretBytes) bytes (RFC 7518 §3.2), this one has \(secret.utf8.count)"
        }

        var digest: DigestAlgorithm {
            switch self {
            case .hs256: .sha256
            case .hs384: .sha384
            case .hs512: .sha512
            }
        }
    }
}

/// The claims TaskGate reads from a user token: `sub` is the uid. The checks are `UserTokens.verify`'s (with the
/// leeway and the configured issuer and audience), not this type's.
struct UserClaims: JWTPayload {
    var sub: SubjectClaim
    var exp: ExpirationClaim
    var nbf: NotBeforeClaim?
    var iat: IssuedAtClaim?
    var iss: IssuerClaim?
    var aud: AudienceClaim?

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// Signed user identities: a JWT whose `sub` is the uid, signed by the application's backend with a shared secret
/// (HS256/384/512) or a private key whose public half TaskGate has (RS256/384/512, PS256/384/512, ES256/384/512,
/// EdDSA). In token mode the uid comes only from such a token, so nobody can act as another user by editing `?uid=`.
///
/// jwt-kit parses the keys and does the cryptography; the keys are looked up once, when loaded, so that a token is
/// checked synchronously wherever a request is admitted (the WebSocket upgrade decides on the event loop).
public final class UserTokens: Sendable {
    /// The keys in force, by `kid`; `unnamed` checks tokens without one.
    struct KeySet: Sendable {
        var byID: [String: any JWTAlgorithm] = [:]
        var unnamed: (any JWTAlgorithm)?
        var summary: [String] = []
    }

    public let settings: UserTokenSettings
    private let keys: Mutex<KeySet>

    private init(settings: UserTokenSettings, keys: KeySet) {
        self.settings = settings
        self.keys = Mutex(keys)
    }

    /// Reads the keys; an unreadable or unusable file is an error that names it.
    public static func load(_ settings: UserTokenSettings) async throws -> UserTokens {
        UserTokens(settings: settings, keys: try await loadKeys(settings))
    }

    /// Reads the key files again (a reload). On an error the keys in force stay.
    public func reload() async throws {
        let fresh = try await Self.loadKeys(settings)
        keys.withLock { $0 = fresh }
    }

    /// What is loaded, for the log: `kid (ALG)` per key.
    public var keySummary: [String] { keys.withLock { $0.summary } }

    /// The uid a valid token names; `401` for anything else, saying what is wrong.
    public func verify(_ token: String, now: Date = Date()) throws(GatewayError) -> String {
        let parser = DefaultJWTParser()
        let header: JWTHeader
        let claims: UserClaims
        let signature: Data
        let parts: (header: ArraySlice<UInt8>, payload: ArraySlice<UInt8>, signature: ArraySlice<UInt8>)
        let bytes = Array(token.utf8)
        do {
            parts = try parser.getTokenParts(bytes)
        } catch {
            throw GatewayError(.unauthorized, "malformed token (expected a JWT: header.payload.signature)")
        }
        do {
            (header, claims, signature) = try parser.parse(bytes, as: UserClaims.self)
        } catch {
            throw GatewayError(.unauthorized, "token claims need 'sub' (the uid) and 'exp' as a number")
        }
        let key = try self.key(for: header)
        let signingInput = Array(parts.header) + [UInt8(ascii: ".")] + Array(parts.payload)
        guard (try? key.verify(signature, signs: signingInput)) == true else {
            throw GatewayError(.unauthorized, "bad token signature")
        }
        let leeway = TimeInterval(settings.leeway.components.seconds)
        guard claims.exp.value.timeIntervalSince(now) > -leeway else { throw GatewayError(.unauthorized, "token expired") }
        if let notBefore = claims.nbf, notBefore.value.timeIntervalSince(now) > leeway {
            throw GatewayError(.unauthorized, "token not valid yet")
        }
        if let issuer = settings.issuer, claims.iss?.value != issuer {
            throw GatewayError(.unauthorized, "token 'iss' must be '\(issuer)'")
        }
        if let audience = settings.audience, claims.aud?.value.contains(audience) != true {
            throw GatewayError(.unauthorized, "token 'aud' must include '\(audience)'")
        }
        guard Identifier.isValidUID(claims.sub.value) else {
            throw GatewayError(.unauthorized, "token 'sub' is not a valid uid")
        }
        return claims.sub.value
    }

    /// The key a token names, which must use the algorithm the token says: so `alg: none`, or an HMAC token made
    /// with a public key as its secret, finds no key.
    private func key(for header: JWTHeader) throws(GatewayError) -> any JWTAlgorithm {
        let found: (any JWTAlgorithm)? = keys.withLock { keys in
            if let kid = header.kid { keys.byID[kid] } else { keys.unnamed }
        }
        guard let found else {
            if let kid = header.kid { throw GatewayError(.unauthorized, "token 'kid' '\(kid)' names no key") }
            throw GatewayError(.unauthorized, "token has no 'kid' and more than one key is configured")
        }
        guard let algorithm = header.alg, algorithm == found.name else {
            throw GatewayError(
                .unauthorized, "token is signed with \(header.alg.map { "'\($0)'" } ?? "no 'alg'"), its key is for \(found.name)")
        }
        return found
    }

    // MARK: - Loading

    private static func loadKeys(_ settings: UserTokenSettings) async throws -> KeySet {
        let collection = JWTKeyCollection()
        var set = KeySet()
        func take(_ kid: String, alg: String? = nil) async throws {
            let key = try await collection.getKey(for: JWKIdentifier(string: kid), alg: alg)
            set.byID[kid] = key
            set.summary.append("\(kid) (\(key.name))")
        }
        for argument in settings.keyFiles {
            let (algorithm, path) = splitAlgorithm(argument)
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw StartupError(description: "token key '\(path)': cannot read it: \(error.localizedDescription)")
            }
            if text.drop(while: \.isWhitespace).first == "{" {
                guard algorithm == nil else { throw StartupError(description: "token key '\(path)': a JWKS names its algorithms itself") }
                let jwks: JWKS
                do {
                    jwks = try JSONDecoder().decode(JWKS.self, from: Data(text.utf8))
                } catch {
                    throw StartupError(description: "token key '\(path)': not a JWKS: \(error)")
                }
                for jwk in jwks.keys {
                    guard let kid = jwk.keyIdentifier?.string, let alg = jwk.algorithm?.rawValue else {
                        throw StartupError(description: "token key '\(path)': every JWKS key needs a 'kid' and an 'alg'")
                    }
                    do {
                        try await collection.add(jwk: jwk)
                        try await take(kid, alg: alg)
                    } catch {
                        throw StartupError(description: "token key '\(path)', kid '\(kid)': \(error)")
                    }
                }
            } else {
                let kid = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
                try await addPEM(text, kid: kid, algorithm: algorithm, path: path, to: collection)
                try await take(kid)
            }
        }
        if let secret = settings.secret {
            if let problem = settings.secretAlgorithm.problem(with: secret) { throw StartupError(description: "--token-secret: \(problem)") }
            await collection.add(hmac: HMACKey(from: secret), digestAlgorithm: settings.secretAlgorithm.digest, kid: "secret")
            set.unnamed = try await collection.getKey(for: JWKIdentifier(string: "secret"))
            set.summary.append("the shared secret (\(settings.secretAlgorithm.rawValue))")
        } else if set.byID.count == 1 {
            set.unnamed = set.byID.values.first
        }
        return set
    }

    /// `PS256:keys/backend.pem` → (`PS256`, `keys/backend.pem`); a path without a known algorithm in front is a path.
    private static func splitAlgorithm(_ argument: String) -> (String?, String) {
        let known = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
        guard let colon = argument.firstIndex(of: ":"), known.contains(String(argument[..<colon])) else { return (nil, argument) }
        return (String(argument[..<colon]), String(argument[argument.index(after: colon)...]))
    }

    private static func addPEM(_ pem: String, kid: String, algorithm: String?, path: String, to collection: JWTKeyCollection) async throws {
        let id = JWKIdentifier(string: kid)
        func refuse(_ kind: String) -> StartupError {
            StartupError(description: "token key '\(path)': \(algorithm ?? "") does not fit its \(kind) key")
        }
        if let rsa = try? Insecure.RSA.PublicKey(pem: pem) {
            let digest: DigestAlgorithm
            switch algorithm?.dropFirst(2) ?? "256" {
            case "256": digest = .sha256
            case "384": digest = .sha384
            case "512": digest = .sha512
            default: throw refuse("RSA")
            }
            switch algorithm?.prefix(2) ?? "RS" {
            case "RS": await collection.add(rsa: rsa, digestAlgorithm: digest, kid: id)
            case "PS": await collection.add(pss: rsa, digestAlgorithm: digest, kid: id)
            default: throw refuse("RSA")
            }
        } else if let key = try? ES256PublicKey(pem: pem) {
            guard algorithm == nil || algorithm == "ES256" else { throw refuse("P-256") }
            await collection.add(ecdsa: key, kid: id)
        } else if let key = try? ES384PublicKey(pem: pem) {
            guard algorithm == nil || algorithm == "ES384" else { throw refuse("P-384") }
            await collection.add(ecdsa: key, kid: id)
        } else if let key = try? ES512PublicKey(pem: pem) {
            guard algorithm == nil || algorithm == "ES512" else { throw refuse("P-521") }
            await collection.add(ecdsa: key, kid: id)
        } else if let key = try? EdDSA.PublicKey(pem: pem) {
            guard algorithm == nil || algorithm == "EdDSA" else { throw refuse("Ed25519") }
            await collection.add(eddsa: key, kid: id)
        } else {
            throw StartupError(
                description: "token key '\(path)': not a PEM public key (RSA, EC P-256/P-384/P-521 or Ed25519) nor a JWKS")
        }
    }
}

/// Mints user tokens as a backend would: `taskgate token`, and the tests.
public enum UserTokenMinter {
    /// A token for `uid`, valid for `lifetime`, signed with the secret (HMAC) or a PEM private key (RSA → RS256,
    /// EC → ES256/384/512, Ed25519 → EdDSA).
    public static func mint(
        uid: String, validFor lifetime: Duration, secret: String? = nil, algorithm: UserTokenSettings.HMACAlgorithm = .hs256,
        privateKeyPEM: String? = nil, kid: String? = nil, issuer: String? = nil, audience: String? = nil, now: Date = Date()
    ) async throws -> String {
        let collection = JWTKeyCollection()
        if let pem = privateKeyPEM {
            if let key = try? Insecure.RSA.PrivateKey(pem: pem) {
                await collection.add(rsa: key, digestAlgorithm: .sha256)
            } else if let key = try? ES256PrivateKey(pem: pem) {
                await collection.add(ecdsa: key)
            } else if let key = try? ES384PrivateKey(pem: pem) {
                await collection.add(ecdsa: key)
            } else if let key = try? ES512PrivateKey(pem: pem) {
                await collection.add(ecdsa: key)
            } else if let key = try? EdDSA.PrivateKey(pem: pem) {
                await collection.add(eddsa: key)
            } else {
                throw StartupError(description: "not a PEM private key (RSA, EC or Ed25519)")
            }
        } else if let secret {
            if let problem = algorithm.problem(with: secret) { throw StartupError(description: problem) }
            await collection.add(hmac: HMACKey(from: secret), digestAlgorithm: algorithm.digest)
        } else {
            throw StartupError(description: "a secret or a private key is needed to sign a token")
        }
        let seconds = Double(lifetime.components.seconds)
        let claims = UserClaims(
            sub: SubjectClaim(value: uid), exp: ExpirationClaim(value: now.addingTimeInterval(seconds)), nbf: nil,
            iat: IssuedAtClaim(value: now), iss: issuer.map { IssuerClaim(value: $0) }, aud: audience.map { AudienceClaim(value: [$0]) })
        var header = JWTHeader()
        if let kid { header.kid = kid }
        return try await collection.sign(claims, header: header)
    }
}
