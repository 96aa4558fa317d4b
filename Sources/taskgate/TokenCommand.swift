import ArgumentParser
import Foundation
import TaskGateCore
import TaskGateServer

/// Mints a user token, as an application backend would (see docs/backend.md for PHP and Python).
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Mint a signed user token for token mode (a JWT, sub = uid).")

    @Argument(help: "The uid the token stands for.")
    var uid: String

    @Option(help: "The shared secret (default: $TASKGATE_TOKEN_SECRET).")
    var secret: String?

    @Option(help: "HS256, HS384 or HS512, with the secret. [HS256]")
    var algorithm = "HS256"

    @Option(help: "Sign with this PEM private key instead (RSA: RS256, EC: ES256/384/512, Ed25519: EdDSA).")
    var privateKey: String?

    @Option(help: "The key id to put in the header (the server's kid of a PEM key is its file name without the extension).")
    var kid: String?

    @Option(help: "The 'iss' claim.")
    var issuer: String?

    @Option(help: "The 'aud' claim.")
    var audience: String?

    @Option(help: "Seconds the token is valid.")
    var ttl = 3600

    func run() async throws {
        guard Identifier.isValidUID(uid) else { throw ValidationError("uid must be 1-128 characters of A-Z a-z 0-9 . _ : @ -") }
        guard ttl > 0 else { throw ValidationError("--ttl must be positive") }
        guard let hmac = UserTokenSettings.HMACAlgorithm(rawValue: algorithm.uppercased()) else {
            throw ValidationError("--algorithm must be HS256, HS384 or HS512 (a private key names its own)")
        }
        var pem: String?
        var secret: String?
        if let privateKey {
            do {
                pem = try String(contentsOfFile: privateKey, encoding: .utf8)
            } catch {
                throw ValidationError("cannot read '\(privateKey)': \(error.localizedDescription)")
            }
        } else {
            guard let shared = self.secret ?? ProcessInfo.processInfo.environment["TASKGATE_TOKEN_SECRET"] else {
                throw ValidationError("a secret is needed: --secret or $TASKGATE_TOKEN_SECRET (or --private-key)")
            }
            if let problem = hmac.problem(with: shared) { throw ValidationError(problem) }
            secret = shared
        }
        do {
            print(try await UserTokenMinter.mint(
                uid: uid, validFor: .seconds(ttl), secret: secret, algorithm: hmac, privateKeyPEM: pem, kid: kid, issuer: issuer,
                audience: audience))
        } catch {
            throw ValidationError("cannot sign: \(error)")
        }
    }
}
