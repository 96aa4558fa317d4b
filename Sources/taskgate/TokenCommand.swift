import ArgumentParser
import Foundation
import TaskGateCore
import TaskGateServer

/// Mints a user token, as an application backend would (see docs/backend.md for PHP and Python).
struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Mint a signed user token for token mode (JWT HS256, sub = uid).")

    @Argument(help: "The uid the token stands for.")
    var uid: String

    @Option(help: "The shared secret (default: $TASKGATE_TOKEN_SECRET).")
    var secret: String?

    @Option(help: "Seconds the token is valid.")
    var ttl = 3600

    func run() throws {
        guard Identifier.isValidUID(uid) else { throw ValidationError("uid must be 1-128 characters of A-Z a-z 0-9 . _ : @ -") }
        guard let secret = secret ?? ProcessInfo.processInfo.environment["TASKGATE_TOKEN_SECRET"], secret.utf8.count >= 16 else {
            throw ValidationError("a secret of at least 16 characters is needed: --secret or $TASKGATE_TOKEN_SECRET")
        }
        guard ttl > 0 else { throw ValidationError("--ttl must be positive") }
        print(UserTokenSigner(secret: secret).mint(uid: uid, validFor: .seconds(ttl)))
    }
}
