import Foundation
import Testing

@testable import TaskGateCore
@testable import TaskGateServer

@Suite("User tokens and admission", .timeLimit(.minutes(1)))
struct SecurityTests {
    static let secret = "0123456789abcdef-0123456789abcdef-secret"
    let tokens: UserTokens

    init() async throws {
        var settings = UserTokenSettings()
        settings.secret = Self.secret
        tokens = try await UserTokens.load(settings)
    }

    func mint(_ uid: String = "alice", ttl: Duration = .seconds(60), secret: String = Self.secret, now: Date = Date()) async throws -> String {
        try await UserTokenMinter.mint(uid: uid, validFor: ttl, secret: secret, now: now)
    }

    @Test func mintedTokensVerify() async throws {
        #expect(try tokens.verify(try await mint()) == "alice")
    }

    @Test func badTokensAreUnauthorized() async throws {
        let token = try await mint()
        let expired = try await mint(now: Date(timeIntervalSinceNow: -120))
        let other = try await mint(secret: "another-secret-entirely-another-secret")
        var tampered = Array(token)
        tampered[tampered.count / 2] = tampered[tampered.count / 2] == "A" ? "B" : "A"
        for bad in [expired, other, String(tampered), "", "a.b", "a.b.c", token + "x"] {
            #expect(throws: GatewayError.self) { try tokens.verify(bad) }
            do { _ = try tokens.verify(bad) } catch { #expect(error.kind == .unauthorized) }
        }
    }

    func candidate(_ query: [String: String], headers: [String: String] = [:], loopback: Bool = true) -> Admission.Candidate {
        Admission.Candidate(query: query, header: { headers[$0] }, isLoopback: loopback)
    }

    func admission(_ mode: AuthMode, origins: [String] = [], adminToken: String? = nil) -> Admission {
        Admission(mode: mode, tokens: tokens, adminToken: adminToken, allowedOrigins: origins, limits: Limits(), clients: ClientDirectory())
    }

    @Test func tokenModeTakesTheUidFromTheTokenOnly() async throws {
        let gate = admission(.token)
        let token = try await mint()
        #expect(try gate.identify(candidate(["token": token])).uid == "alice")
        #expect(try gate.identify(candidate([:], headers: ["authorization": "Bearer \(token)"])).uid == "alice")
        #expect(throws: GatewayError(.unauthorized, "'uid' does not match the token")) {
            try gate.identify(candidate(["token": token, "uid": "mallory"]))
        }
        #expect(throws: GatewayError.self) { try gate.identify(candidate(["uid": "alice"])) }
    }

    @Test func originsAreChecked() throws {
        let gate = admission(.dev, origins: ["https://app.example.com"])
        let allowed = ["https://app.example.com", "http://localhost:3000", "http://127.0.0.1:9501", "https://gw.example.org"]
        for origin in allowed {
            _ = try gate.identify(candidate(["uid": "u"], headers: ["origin": origin, "host": "gw.example.org"]))
        }
        #expect(throws: GatewayError.self) {
            try gate.identify(candidate(["uid": "u"], headers: ["origin": "https://evil.example", "host": "gw.example.org"]))
        }
        _ = try admission(.dev, origins: ["*"]).identify(candidate(["uid": "u"], headers: ["origin": "https://evil.example"]))
    }

    @Test func adminNeedsTheAdminTokenOrLoopback() throws {
        #expect(try admission(.dev).identify(candidate(["uid": "u", "admin": "1"])).isAdmin)
        #expect(try !admission(.dev).identify(candidate(["uid": "u", "admin": "1"], loopback: false)).isAdmin)
        let withToken = admission(.dev, adminToken: "s3cret")
        #expect(try !withToken.identify(candidate(["uid": "u", "admin": "1"])).isAdmin)
        #expect(try withToken.identify(candidate(["uid": "u"], headers: ["authorization": "Bearer s3cret"])).isAdmin)
    }

    @Test func rateLimiterAllowsBurstsThenTheRate() {
        var limiter = RateLimiter(perSecond: 10)
        let start = ContinuousClock.now
        var allowed = 0
        for _ in 0..<30 where limiter.allow(now: start) { allowed += 1 }
        #expect(allowed == 20)
        let refilled = limiter.allow(now: start + .milliseconds(150))
        let exhausted = limiter.allow(now: start + .milliseconds(150))
        #expect(refilled)
        #expect(!exhausted)
    }
}
