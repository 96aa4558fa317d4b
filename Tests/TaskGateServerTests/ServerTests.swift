import Foundation
import Hummingbird
import HummingbirdTesting
import HummingbirdWSTesting
import Logging
import NIOCore
import Synchronization
import TaskGateCore
import Testing

@testable import TaskGateServer

func testArguments(
    adminToken: String? = "test-token", workers: Int = 2, queueLimit: Int = 100
) -> ServerSettings {
    var arguments = ServerSettings()
    arguments.store = .memory
    arguments.logDirectory = nil
    arguments.port = 0
    arguments.adminToken = adminToken
    arguments.taskWorkers = workers
    arguments.queueLimit = queueLimit
    arguments.logLevel = .warning
    arguments.publicDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../public").path
    arguments.shutdownGrace = .milliseconds(100)
    return arguments
}

func json(_ buffer: ByteBuffer) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? [String: Any])
}

let bearer: HTTPFields = [.authorization: "Bearer test-token", .contentType: "application/json"]

@Suite("REST admin API (router)", .timeLimit(.minutes(2)))
struct AdminAPITests {
    @Test func submitThenReadTheTask() async throws {
        let app = try await buildApplication(testArguments())
        try await app.test(.router) { client in
            let id = try await client.execute(
                uri: "/api/v1/tasks", method: .post, headers: bearer,
                body: ByteBuffer(string: #"{"cmd":"echo","args":{"a":1},"uid":"u1"}"#)
            ) { response in
                #expect(response.status == .accepted)
                let task = try json(response.body)
                #expect(task["status"] as? String == "queued")
                #expect(task["uid"] as? String == "u1")
                return try #require(task["id"] as? String)
            }
            try await client.execute(uri: "/api/v1/tasks/\(id)", method: .get, headers: bearer) { response in
                #expect(response.status == .ok)
                #expect((try? json(response.body))?["id"] as? String == id)
            }
            try await client.execute(uri: "/api/v1/tasks/nope", method: .get, headers: bearer) { response in
                #expect(response.status == .notFound)
                #expect((try? json(response.body))?["error"] as? String == "not_found")
            }
            try await client.execute(uri: "/api/v1/tasks?uid=u1&limit=5", method: .get, headers: bearer) { response in
                let tasks = try #require(try json(response.body)["tasks"] as? [[String: Any]])
                #expect(tasks.map { $0["id"] as? String } == [id])
            }
        }
    }

    @Test(arguments: [
        (#"{"cmd":"nope"}"#, HTTPResponse.Status.notFound, "unknown_command"),
        (#"{"args":{}}"#, .badRequest, "bad_request"),
        (#"not json"#, .badRequest, "bad_request"),
        (#"{"cmd":5}"#, .badRequest, "bad_request"),
        (#"{"cmd":"echo","args":[1]}"#, .badRequest, "bad_request"),
        (#"{"cmd":"sleep","args":{"ms":-5}}"#, .badRequest, "bad_request"),
        (#"{"cmd":"echo","uid":"bad uid"}"#, .badRequest, "bad_request"),
        (#"{"cmd":"echo","id":"has space"}"#, .badRequest, "bad_request"),
    ])
    func badSubmissions(body: String, status: HTTPResponse.Status, slug: String) async throws {
        let app = try await buildApplication(testArguments())
        try await app.test(.router) { client in
            try await client.execute(uri: "/api/v1/tasks", method: .post, headers: bearer, body: ByteBuffer(string: body)) { response in
                #expect(response.status == status)
                let error = try json(response.body)
                #expect(error["type"] as? String == "error")
                #expect(error["error"] as? String == slug)
                #expect(error["code"] as? Int == Int(status.code))
            }
        }
    }

    @Test func authIsRequired() async throws {
        let app = try await buildApplication(testArguments())
        try await app.test(.router) { client in
            try await client.execute(uri: "/api/v1/handlers", method: .get) { response in
                #expect(response.status == .unauthorized)
                #expect((try? json(response.body))?["error"] as? String == "unauthorized")
            }
            try await client.execute(uri: "/api/v1/handlers", method: .get, headers: [.authorization: "Bearer wrong"]) { response in
                #expect(response.status == .unauthorized)
            }
            try await client.execute(uri: "/api/v1/handlers", method: .get, headers: bearer) { response in
                #expect(response.status == .ok)
                let handlers = try #require(try json(response.body)["handlers"] as? [[String: Any]])
                #expect(handlers.compactMap { $0["name"] as? String } == ["echo", "fail", "primes", "sleep"])
            }
        }
    }

    @Test func withoutATokenOnlyLoopbackIsAdmin() async throws {
        let app = try await buildApplication(testArguments(adminToken: nil))
        // The router test client has no peer address: it is not loopback.
        try await app.test(.router) { client in
            try await client.execute(uri: "/api/v1/clients", method: .get) { response in
                #expect(response.status == .forbidden)
            }
        }
        try await app.test(.live) { client in
            try await client.execute(uri: "/api/v1/clients", method: .get) { response in
                #expect(response.status == .ok)
            }
        }
    }

    /// A scoped id holds `~` and the uid's `@`; clients percent-encode both in the path (schemathesis found this).
    @Test func aPercentEncodedIDNamesTheTask() async throws {
        let app = try await buildApplication(testArguments())
        try await app.test(.router) { client in
            let id = try await client.execute(
                uri: "/api/v1/tasks", method: .post, headers: bearer,
                body: ByteBuffer(string: #"{"cmd":"sleep","args":{"ms":5000},"uid":"me@host","id":"t-1"}"#)
            ) { response in
                #expect(response.status == .accepted)
                return try #require(try json(response.body)["id"] as? String)
            }
            #expect(id == "me@host~t-1")
            let encoded = try #require(id.addingPercentEncoding(withAllowedCharacters: .alphanumerics))
            #expect(encoded == "me%40host%7Et%2D1")
            try await client.execute(uri: "/api/v1/tasks/\(encoded)", method: .get, headers: bearer) { response in
                #expect(response.status == .ok)
                #expect((try? json(response.body))?["id"] as? String == id)
            }
            try await client.execute(uri: "/api/v1/tasks/\(encoded)/cancel", method: .post, headers: bearer) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/api/v1/tasks/bad%ZZ", method: .get, headers: bearer) { response in
                #expect(response.status == .badRequest)
            }
        }
    }

    @Test func cancelAndReload() async throws {
        let (app, gateway) = try await applicationWithGateway()
        try await app.test(.router) { client in
            try await client.execute(
                uri: "/api/v1/tasks", method: .post, headers: bearer, body: ByteBuffer(string: #"{"cmd":"sleep","args":{"ms":5000},"id":"long"}"#)
            ) { #expect($0.status == .accepted) }
            try await client.execute(uri: "/api/v1/tasks/long/cancel", method: .post, headers: bearer) { response in
                #expect(response.status == .ok)
            }
            // Wait for the cancel to land (the task has no owner, so no events: the pool going idle), then a second
            // cancel conflicts.
            _ = try await gateway.finished("long")
            let status = try await client.execute(uri: "/api/v1/tasks/long", method: .get, headers: bearer) {
                try json($0.body)["status"] as? String ?? ""
            }
            #expect(status == "cancelled")
            try await client.execute(uri: "/api/v1/tasks/long/cancel", method: .post, headers: bearer) { response in
                #expect(response.status == .conflict)
                #expect((try? json(response.body))?["error"] as? String == "already_finished")
            }
            try await client.execute(uri: "/api/v1/tasks/ghost/cancel", method: .post, headers: bearer) { #expect($0.status == .notFound) }
            try await client.execute(uri: "/api/v1/reload", method: .post, headers: bearer) { response in
                #expect((try? json(response.body))?["generation"] as? Int == 2)
            }
        }
    }

    @Test func listValidatesItsQuery() async throws {
        let app = try await buildApplication(testArguments())
        try await app.test(.router) { client in
            for query in ["limit=0", "limit=1001", "limit=x", "status=bogus"] {
                try await client.execute(uri: "/api/v1/tasks?\(query)", method: .get, headers: bearer) { response in
                    #expect(response.status == .badRequest, "\(query)")
                }
            }
        }
    }

    @Test func healthAndDemoPage() async throws {
        let app = try await buildApplication(testArguments())
        try await app.test(.router) { client in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
                let health = try? json(response.body)
                #expect(health?["status"] as? String == "ok")
                #expect(health?["node"] as? String == "local" && health?["store"] as? String == "memory")
                #expect(health?["database"] as? String == "ok")
            }
            try await client.execute(uri: "/api/v1/nodes", method: .get, headers: bearer) { response in
                #expect(response.status == .ok)
                let nodes = (try? json(response.body))?["nodes"] as? [[String: Any]]
                #expect(nodes?.count == 1 && nodes?.first?["id"] as? String == "local" && nodes?.first?["self"] as? Bool == true)
            }
            try await client.execute(uri: "/api/v1/reload?node=elsewhere", method: .post, headers: bearer) { response in
                #expect(response.status == .notFound)
                #expect((try? json(response.body))?["error"] as? String == "node_not_found")
            }
            try await client.execute(uri: "/", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains("TaskGate"))
            }
            try await client.execute(uri: "/no/such/page", method: .get) { response in
                #expect(response.status == .notFound)
                #expect((try? json(response.body))?["type"] as? String == "error")
            }
        }
    }
}

@Suite("Long-poll (router)", .timeLimit(.minutes(2)))
struct LongPollTests {
    @Test func postSubmitsAndGetDeliversInOrder() async throws {
        let app = try await buildApplication(testArguments())
        try await app.test(.router) { client in
            try await client.execute(
                uri: "/poll?uid=lp1", method: .post, body: ByteBuffer(string: #"{"cmd":"sleep","args":{"ms":100},"ref":"r"}"#)
            ) { response in
                #expect(response.status == .accepted)
                let reply = try json(response.body)
                #expect(reply["type"] as? String == "submitted")
                #expect(reply["ref"] as? String == "r")
            }
            var cursor = 0
            var seen: [Int] = []
            var finished = false
            // Each poll returns on the next events (or after its own 5 s); the whole exchange has a deadline.
            let deadline = ContinuousClock.now + .seconds(20)
            while !finished {
                guard ContinuousClock.now < deadline else { throw TimedOut("the task's done event over long-poll", after: .seconds(20)) }
                try await client.execute(uri: "/poll?uid=lp1&cursor=\(cursor)&timeout=5", method: .get) { response in
                    let batch = try json(response.body)
                    #expect(batch["reset"] as? Bool == false)
                    for event in batch["events"] as? [[String: Any]] ?? [] {
                        seen.append(event["seq"] as! Int)
                        if event["type"] as? String == "done" { finished = true }
                    }
                    cursor = batch["cursor"] as! Int
                }
            }
            #expect(finished)
            #expect(seen == Array(1...12))
        }
    }

    @Test func badRequestsAreAnswered() async throws {
        let app = try await buildApplication(testArguments())
        try await app.test(.router) { client in
            for uri in ["/poll", "/poll?uid=", "/poll?uid=a%20b", "/poll?uid=a&timeout=61", "/poll?uid=a&timeout=-1", "/poll?uid=a&cursor=x"] {
                try await client.execute(uri: uri, method: .get) { response in
                    #expect(response.status == .badRequest, "\(uri)")
                    #expect((try? json(response.body))?["error"] as? String == "bad_request")
                }
            }
            try await client.execute(uri: "/poll?uid=a", method: .post, body: ByteBuffer(string: "[]")) { response in
                #expect(response.status == .badRequest)
            }
            try await client.execute(uri: "/poll?uid=a", method: .post, body: ByteBuffer(string: #"{"cmd":"reload"}"#)) { response in
                #expect(response.status == .forbidden)
            }
            try await client.execute(
                uri: "/poll?uid=a", method: .post, body: ByteBuffer(string: String(repeating: " ", count: 70_000) + "{}")
            ) { response in
                #expect(response.status == .contentTooLarge)
            }
        }
    }

    @Test func emptyPollTimesOutWithTheSameCursor() async throws {
        let app = try await buildApplication(testArguments())
        try await app.test(.router) { client in
            try await client.execute(uri: "/poll?uid=quiet&cursor=0&timeout=1", method: .get) { response in
                let batch = try json(response.body)
                #expect((batch["events"] as? [Any])?.isEmpty == true)
                #expect(batch["cursor"] as? Int == 0)
            }
            try await client.execute(uri: "/poll?uid=quiet&cursor=7&timeout=1", method: .get) { response in
                #expect((try? json(response.body))?["reset"] as? Bool == true)
            }
        }
    }
}
