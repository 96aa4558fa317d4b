import Foundation
import Hummingbird
import HummingbirdTesting
import HummingbirdWSTesting
import HummingbirdWSClient
import HummingbirdWebSocket
import NIOCore
import Synchronization
import TaskGateCore
import Testing

@testable import TaskGateServer

/// Reads text messages as JSON objects until `until` says stop (or the socket closes); throws `TimedOut` if that
/// takes longer than `timeout` (the reading is cancelled then).
func readMessages(
    _ inbound: WebSocketInboundStream, timeout: Duration = .seconds(20), until: @escaping @Sendable ([String: Any]) -> Bool
) async throws -> [[String: Any]] {
    let texts = try await within(timeout, "WebSocket messages") { () async throws -> [String] in
        var texts: [String] = []
        for try await message in inbound.messages(maxSize: 1 << 20) {
            guard case .text(let text) = message,
                let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
            else { continue }
            texts.append(text)
            if until(object) { break }
        }
        return texts
    }
    return texts.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
}

func type(_ message: [String: Any]) -> String? { message["type"] as? String }

@Suite("WebSocket (live)", .timeLimit(.minutes(2)))
struct WebSocketTests {
    @Test func submitGetsSubmittedProgressAndDone() async throws {
        let app = try await buildApplication(testArguments())
        _ = try await app.test(.live) { client in
            try await client.ws("/ws?uid=ws1") { inbound, outbound, _ in
                try await outbound.write(.text(#"{"cmd":"sleep","args":{"ms":100},"ref":"r1"}"#))
                let messages = try await readMessages(inbound) { type($0) == "done" }
                #expect(type(messages[0]) == "hello")
                #expect(messages[0]["uid"] as? String == "ws1")
                #expect(type(messages[1]) == "submitted")
                #expect(messages[1]["code"] as? Int == 202)
                #expect(messages[1]["ref"] as? String == "r1")
                let events = messages.dropFirst(2)
                #expect(events.map { $0["seq"] as? Int } == Array(1...12).map { $0 })
                #expect(events.dropLast().allSatisfy { type($0) == "progress" })
                let done = try #require(events.last)
                #expect(done["code"] as? Int == 200)
                #expect((done["task"] as? [String: Any])?["status"] as? String == "succeeded")
            }
        }
    }

    @Test func badMessagesGetErrorsAndTheSocketStaysOpen() async throws {
        let app = try await buildApplication(testArguments())
        _ = try await app.test(.live) { client in
            try await client.ws("/ws?uid=ws2") { inbound, outbound, _ in
                try await outbound.write(.text("not json"))
                try await outbound.write(.text(#"{"cmd":"nope","ref":"x"}"#))
                try await outbound.write(.binary(ByteBuffer(string: "{}")))
                try await outbound.write(.text(String(repeating: "a", count: 70_000)))
                try await outbound.write(.text(#"{"cmd":"reload"}"#))
                try await outbound.write(.text(#"{"cmd":"ping","ref":"last"}"#))
                let messages = try await readMessages(inbound) { type($0) == "pong" }
                let errors = messages.filter { type($0) == "error" }
                #expect(errors.map { $0["code"] as? Int } == [400, 404, 400, 413, 403])
                #expect(errors[1]["ref"] as? String == "x")
                #expect(messages.last?["ref"] as? String == "last")
            }
        }
    }

    @Test func eventsReachOnlyTheOwner() async throws {
        let app = try await buildApplication(testArguments())
        // The other uid is connected before the owner submits, and pings only once the owner has its `done`: an event
        // that leaked to it would be in its stream before the pong. (A timer in the group bounds both exchanges.)
        let (otherIsConnected, connected) = AsyncStream<Void>.makeStream()
        let (ownerIsDone, done) = AsyncStream<Void>.makeStream()
        _ = try await app.test(.live) { client in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await client.ws("/ws?uid=other") { inbound, outbound, _ in
                        var seen: [String] = []
                        for try await message in inbound.messages(maxSize: 1 << 20) {
                            guard case .text(let text) = message,
                                let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
                            else { continue }
                            seen.append(type(object) ?? "?")
                            if type(object) == "hello" {
                                connected.yield()
                                for await _ in ownerIsDone { break }
                                try await outbound.write(.text(#"{"cmd":"ping"}"#))
                            }
                            if type(object) == "pong" { break }
                        }
                        #expect(seen == ["hello", "pong"])
                    }
                }
                group.addTask {
                    for await _ in otherIsConnected { break }
                    try await client.ws("/ws?uid=owner") { inbound, outbound, _ in
                        try await outbound.write(.text(#"{"cmd":"echo"}"#))
                        let messages = try await readMessages(inbound) { type($0) == "done" }
                        #expect(messages.contains { type($0) == "done" })
                    }
                    done.yield()
                }
                group.addTask {
                    try await Task.sleep(for: .seconds(30))
                    throw TimedOut("both WebSocket exchanges", after: .seconds(30))
                }
                // The two exchanges, unless the timer ends first (its error then cancels them).
                for _ in 0..<2 { try await group.next() }
                group.cancelAll()
            }
        }
    }

    @Test func reconnectWithCursorReplaysMissedEvents() async throws {
        let (app, gateway) = try await applicationWithGateway()
        _ = try await app.test(.live) { client in
            let seen = Mutex((seq: 0, task: ""))
            try await client.ws("/ws?uid=resume") { inbound, outbound, _ in
                try await outbound.write(.text(#"{"cmd":"sleep","args":{"ms":300}}"#))
                let messages = try await readMessages(inbound) { type($0) == "progress" }
                let task = (messages.last?["task"] as? [String: Any])?["id"] as? String ?? ""
                seen.withLock { $0 = (messages.last?["seq"] as? Int ?? 0, task) }
            }
            let (lastSeen, taskID) = seen.withLock { $0 }
            #expect(lastSeen == 1)
            // Disconnected until the task has finished (its done event, awaited on the gateway).
            _ = try await gateway.finished(taskID)
            try await client.ws("/ws?uid=resume&cursor=\(lastSeen)") { inbound, outbound, _ in
                let messages = try await readMessages(inbound) { type($0) == "done" }
                #expect(type(messages[0]) == "hello")
                #expect(messages[0]["reset"] as? Bool == false)
                #expect(messages.dropFirst().map { $0["seq"] as? Int } == Array(2...12).map { $0 })
            }
        }
    }

    @Test func adminCommandsNeedTheToken() async throws {
        let app = try await buildApplication(testArguments())
        _ = try await app.test(.live) { client in
            var configuration = WebSocketClientConfiguration()
            configuration.additionalHeaders = [.authorization: "Bearer test-token"]
            try await client.ws("/ws?uid=admin", configuration: configuration) { inbound, outbound, _ in
                try await outbound.write(.text(#"{"cmd":"clients"}"#))
                let messages = try await readMessages(inbound) { type($0) == "clients" }
                #expect(messages[0]["admin"] as? Bool == true)
                let clients = try #require(messages.last?["clients"] as? [[String: Any]])
                #expect(clients.contains { $0["uid"] as? String == "admin" && $0["transport"] as? String == "websocket" })
            }
        }
    }

    @Test func missingUidIsRefusedBeforeUpgrade() async throws {
        let app = try await buildApplication(testArguments())
        _ = try await app.test(.live) { client in
            await #expect(throws: (any Error).self) {
                try await client.ws("/ws") { _, _, _ in }
            }
            try await client.execute(uri: "/ws?uid=x", method: .get) { response in
                #expect(response.status == .badRequest)
            }
        }
    }

    @Test func pingsStayFastWhileACPUBoundTaskRuns() async throws {
        let app = try await buildApplication(testArguments())
        _ = try await app.test(.live) { client in
            try await client.ws("/ws?uid=busy") { inbound, outbound, _ in
                try await within(.seconds(60), "ten pongs") {
                    try await outbound.write(.text(#"{"cmd":"primes","args":{"limit":100000000}}"#))
                    try await outbound.write(.text(#"{"cmd":"primes","args":{"limit":100000000}}"#))
                    var iterator = inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
                    var slowest = Duration.zero
                    var runningSeen = false
                    for _ in 0..<10 {
                        let start = ContinuousClock.now
                        try await outbound.write(.text(#"{"cmd":"ping"}"#))
                        while let message = try await iterator.next() {
                            guard case .text(let text) = message else { continue }
                            if text.contains(#""status":"running""#) { runningSeen = true }
                            if text.contains(#""type":"pong""#) { break }
                        }
                        slowest = max(slowest, ContinuousClock.now - start)
                        // Not a synchronisation: spreads the ten pings over the sieving, so they sample it throughout.
                        try await Task.sleep(for: .milliseconds(20))
                    }
                    #expect(runningSeen)
                    // Generous bound: the point is that pings are not stuck behind seconds of sieving.
                    #expect(slowest < .milliseconds(500))
                }
            }
        }
    }
}
