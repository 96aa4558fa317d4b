import Foundation
import JWTKit
import Testing

@testable import TaskGateCore
@testable import TaskGateServer

/// Tokens signed with private keys whose public halves TaskGate reads from PEM and JWKS files.
@Suite("User tokens: keys, algorithms and claims", .timeLimit(.minutes(1)))
struct UserTokenKeyTests {
    let directory: URL

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("taskgate-keys-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    func write(_ name: String, _ text: String) throws -> String {
        let url = directory.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    func load(_ files: [String], secret: String? = nil, issuer: String? = nil, audience: String? = nil) async throws -> UserTokens {
        var settings = UserTokenSettings()
        settings.keyFiles = files
        settings.secret = secret
        settings.issuer = issuer
        settings.audience = audience
        return try await UserTokens.load(settings)
    }

    func refusal(_ tokens: UserTokens, _ token: String) -> String? {
        do {
            _ = try tokens.verify(token)
            return nil
        } catch {
            #expect(error.kind == .unauthorized)
            return error.info
        }
    }

    @Test func es256AndEdDSAKeysFromPEMFilesNamedByKid() async throws {
        let ec = ES256PrivateKey()
        let ed = try EdDSA.PrivateKey()
        let ecPath = try write("backend.pem", ec.publicKey.pemRepresentation)
        let edPath = try write("edge.pem", ed.publicKey.pemRepresentation)
        let tokens = try await load([ecPath, edPath])
        #expect(Set(tokens.keySummary) == ["backend (ES256)", "edge (EdDSA)"])

        let ecToken = try await UserTokenMinter.mint(uid: "alice", validFor: .seconds(60), privateKeyPEM: ec.pemRepresentation, kid: "backend")
        #expect(try tokens.verify(ecToken) == "alice")
        let edToken = try await UserTokenMinter.mint(uid: "bob", validFor: .seconds(60), privateKeyPEM: ed.pemRepresentation, kid: "edge")
        #expect(try tokens.verify(edToken) == "bob")

        // Signed by the EC key but naming the Ed25519 one: its algorithm is not that key's.
        let crossed = try await UserTokenMinter.mint(uid: "alice", validFor: .seconds(60), privateKeyPEM: ec.pemRepresentation, kid: "edge")
        #expect(refusal(tokens, crossed)?.contains("its key is for EdDSA") == true)
        let unnamed = try await UserTokenMinter.mint(uid: "alice", validFor: .seconds(60), privateKeyPEM: ec.pemRepresentation)
        #expect(refusal(tokens, unnamed)?.contains("no 'kid'") == true)
        let unknown = try await UserTokenMinter.mint(uid: "alice", validFor: .seconds(60), privateKeyPEM: ec.pemRepresentation, kid: "other")
        #expect(refusal(tokens, unknown)?.contains("names no key") == true)
    }

    @Test func theOnlyKeyChecksTokensWithoutKid() async throws {
        let ec = ES256PrivateKey()
        let tokens = try await load([try write("only.pem", ec.publicKey.pemRepresentation)])
        let token = try await UserTokenMinter.mint(uid: "alice", validFor: .seconds(60), privateKeyPEM: ec.pemRepresentation)
        #expect(try tokens.verify(token) == "alice")
        // Another key of the same kind does not pass for it.
        let stranger = try await UserTokenMinter.mint(uid: "alice", validFor: .seconds(60), privateKeyPEM: ES256PrivateKey().pemRepresentation)
        #expect(refusal(tokens, stranger) == "bad token signature")
    }

    /// `alg: none`, and an HMAC token whose secret is the server's public key (the classic confusion), find no key.
    @Test func algorithmsMustMatchTheKey() async throws {
        let ec = ES256PrivateKey()
        let pem = ec.publicKey.pemRepresentation
        let tokens = try await load([try write("k.pem", pem)])
        let confused = try await UserTokenMinter.mint(uid: "alice", validFor: .seconds(60), secret: pem)
        #expect(refusal(tokens, confused)?.contains("signed with 'HS256', its key is for ES256") == true)

        func base64URL(_ text: String) -> String {
            Data(text.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
        }
        let exp = Int(Date().timeIntervalSince1970) + 60
        let none = base64URL(#"{"alg":"none","typ":"JWT"}"#) + "." + base64URL(#"{"sub":"alice","exp":\#(exp)}"#) + "."
        #expect(refusal(tokens, none)?.contains("signed with 'none'") == true)
        #expect(refusal(tokens, "not-a-token") != nil)
    }

    @Test func issuerAudienceAndLeeway() async throws {
        let secret = "0123456789abcdef-0123456789abcdef-secret"
        let tokens = try await load([], secret: secret, issuer: "https://backend.example", audience: "taskgate")
        func mint(issuer: String?, audience: String?, now: Date = Date()) async throws -> String {
            try await UserTokenMinter.mint(uid: "alice", validFor: .seconds(60), secret: secret, issuer: issuer, audience: audience, now: now)
        }
        #expect(try tokens.verify(try await mint(issuer: "https://backend.example", audience: "taskgate")) == "alice")
        #expect(refusal(tokens, try await mint(issuer: "https://evil.example", audience: "taskgate"))?.contains("'iss'") == true)
        #expect(refusal(tokens, try await mint(issuer: nil, audience: "taskgate"))?.contains("'iss'") == true)
        #expect(refusal(tokens, try await mint(issuer: "https://backend.example", audience: "other"))?.contains("'aud'") == true)
        // Expired 10 s ago: within the 30 s leeway. Expired 2 minutes ago: not.
        let justExpired = try await mint(issuer: "https://backend.example", audience: "taskgate", now: Date(timeIntervalSinceNow: -70))
        #expect(try tokens.verify(justExpired) == "alice")
        let expired = try await mint(issuer: "https://backend.example", audience: "taskgate", now: Date(timeIntervalSinceNow: -180))
        #expect(refusal(tokens, expired) == "token expired")
    }

    @Test func jwksKeysNeedKidAndAlgAndAreReadAgainOnReload() async throws {
        let first = ES256PrivateKey()
        let second = ES256PrivateKey()
        func jwks(_ key: ES256PrivateKey, kid: String) throws -> String {
            let parameters = try #require(key.publicKey.parameters)
            return #"{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","kid":"\#(kid)","x":"\#(parameters.x)","y":"\#(parameters.y)"}]}"#
        }
        let path = try write("keys.json", try jwks(first, kid: "2026-11"))
        let tokens = try await load([path])
        let token = try await UserTokenMinter.mint(uid: "alice", validFor: .seconds(60), privateKeyPEM: first.pemRepresentation, kid: "2026-11")
        #expect(try tokens.verify(token) == "alice")

        // Rotation: the file now holds only the new key; a reload drops the old one.
        _ = try write("keys.json", try jwks(second, kid: "2026-12"))
        try await tokens.reload()
        #expect(refusal(tokens, token)?.contains("names no key") == true)
        let rotated = try await UserTokenMinter.mint(uid: "alice", validFor: .seconds(60), privateKeyPEM: second.pemRepresentation, kid: "2026-12")
        #expect(try tokens.verify(rotated) == "alice")

        // A bad file on reload keeps the keys in force.
        _ = try write("keys.json", #"{"keys":[{"kty":"EC","crv":"P-256","kid":"no-alg","x":"AA","y":"AA"}]}"#)
        await #expect(throws: StartupError.self) { try await tokens.reload() }
        #expect(try tokens.verify(rotated) == "alice")
    }

    @Test func unusableKeyFilesAreStartupErrorsNamingTheFile() async throws {
        let garbage = try write("garbage.pem", "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
        do {
            _ = try await load([garbage])
            Issue.record("a bad key file was accepted")
        } catch let error as StartupError {
            #expect(error.description.contains("garbage.pem"))
        }
        let ec = try write("ec.pem", ES256PrivateKey().publicKey.pemRepresentation)
        await #expect(throws: StartupError.self) { _ = try await load(["RS256:" + ec]) }
        await #expect(throws: StartupError.self) { _ = try await load([directory.appendingPathComponent("missing.pem").path]) }
    }
}
