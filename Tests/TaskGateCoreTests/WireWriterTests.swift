import Foundation
import Testing

@testable import TaskGateCore

/// `WireWriter` must write exactly what `JSONEncoder` (configured as `WireJSON.encoder`) writes.
@Suite("Wire JSON writer", .timeLimit(.minutes(2)))
struct WireWriterTests {
    func foundation(_ value: some Encodable) throws -> String {
        String(decoding: try WireJSON.encoder.encode(value), as: UTF8.self)
    }

    static let strings = [
        "", "plain", "quote\" back\\slash /slash", "\n\t\r\u{08}\u{0C}\u{01}\u{1F}\u{7F}", "é 中 🎉 \u{2028}", "\u{0}",
    ]
    static let numbers: [Double] = [
        0, -0.0, 1, -1, 1.5, 0.1, 0.3, 1e-7, 123_456_789_012_345, 999_999_999_999_999, 1e15, 1e16, 1.5e300, 5e-324,
        -2.5e-5, 3.141592653589793, 12.5, 0.5, 100.25, 2e-3, 1e21, 1.7976931348623157e308,
    ]
    static let keys = ["b", "a", "B", "A", "a10", "a9", "_x", "Z", "é", "e", "10", "9", "aB", "ab", "", "a-b", "a_b", "z"]

    @Test func freeFormValues() throws {
        var object: [String: JSONValue] = [:]
        for (index, key) in Self.keys.enumerated() { object[key] = .number(Double(index)) }
        let values: [JSONValue] = [
            .null, true, false, .object(object), .array(Self.strings.map { .string($0) }),
            .array(Self.numbers.map { .number($0) }),
            ["rows": [["id": 1, "name": "x", "tags": ["a", "b"], "n": nil], []], "nested": ["deep": ["er": [1, 2.5]]]],
        ]
        for value in values {
            let expected = try foundation(value)
            #expect(WireJSON.encode(value) == expected, "expected \(expected)")
        }
    }

    static func task(finished: Bool) -> TaskRecord {
        var task = TaskRecord(id: "t-1", cmd: "echo", uid: finished ? "u\"1" : nil, args: ["a": 1, "b": ["x/y"]])
        task.createdAt = Date(timeIntervalSince1970: 1_764_000_000.1234)
        if finished {
            task.status = .timedOut
            task.progress = 0.3
            task.result = ["ok": true, "list": [1, 2, 3]]
            task.error = "timed out\nafter 5 ms"
            task.attempts = 2
            task.startedAt = Date(timeIntervalSince1970: 1_764_000_001.5)
            task.finishedAt = Date(timeIntervalSince1970: 1_764_000_002.999)
            task.node = "node-b"
            task.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            task.priority = 7
            task.runAt = Date(timeIntervalSince1970: 1_764_000_000.75)
            task.schedule = "nightly"
        }
        return task
    }

    @Test func tasks() throws {
        for task in [Self.task(finished: false), Self.task(finished: true)] {
            #expect(WireJSON.encode(task) == (try foundation(task)))
        }
        for progress in Self.numbers {
            var task = Self.task(finished: true)
            task.progress = progress
            #expect(WireJSON.encode(task) == (try foundation(task)))
        }
    }

    @Test func messages() throws {
        var full = ServerMessage(type: "reloaded", code: 200, info: "all \"fields\"", ref: "r/1")
        full.error = "bad_request"
        full.seq = UInt64.max
        full.head = 12
        full.task = .whole(Self.task(finished: true))
        full.duplicate = true
        full.uid = "u1"
        full.transport = "websocket"
        full.admin = false
        full.reset = true
        full.handlers = ["echo", "sleep"]
        full.clients = [
            ClientInfo(id: "c1", uid: "u1", transport: .webSocket, connectedAt: Date(timeIntervalSince1970: 1e9), remote: nil, admin: true),
            ClientInfo(id: "c2", uid: "u2", transport: .longPoll, remote: "127.0.0.1:5", admin: false, node: "node-a"),
        ]
        full.nodes = [
            NodeReload(node: "node-a", error: "bad config"),
            NodeReload(node: "node-b", result: ReloadResult(table: HandlerTable(generation: 3, handlers: []), added: ["x"])),
        ]
        full.generation = 7
        full.added = ["a"]
        full.changed = []
        full.removed = ["r"]
        let messages: [ServerMessage] = [
            full, ServerMessage(type: "pong", code: 200, ref: "p1"), .error(.badRequest("no \\ way"), ref: nil),
            .hello(uid: "u", transport: .sse, head: 3, admin: false, reset: false),
            .submitted(Self.task(finished: false), duplicate: false, ref: nil), .done(Self.task(finished: true), seq: 9),
            .done(Self.task(finished: false), seq: 10), .progress(Self.task(finished: true), seq: 11),
        ]
        for message in messages {
            #expect(WireJSON.encode(message) == (try foundation(message)))
        }
    }

    /// Events say what changed: no args, no cmd, no timestamps; `hello` reports the latest seq as `head`.
    @Test func eventsCarryOnlyWhatChanged() {
        let task = Self.task(finished: true)
        #expect(
            WireJSON.encode(ServerMessage.progress(task, seq: 4))
                == #"{"seq":4,"task":{"attempts":2,"id":"t-1","progress":0.3,"status":"timed_out"},"type":"progress"}"#)
        #expect(
            WireJSON.encode(ServerMessage.done(task, seq: 5))
                == #"{"code":200,"info":"task finished","seq":5,"task":{"error":"timed out\nafter 5 ms","id":"t-1","#
                + #""result":{"list":[1,2,3],"ok":true},"status":"timed_out"},"type":"done"}"#)
        #expect(
            WireJSON.encode(ServerMessage.done(Self.task(finished: false), seq: 6))
                == #"{"code":200,"info":"task finished","seq":6,"task":{"error":null,"id":"t-1","result":null,"status":"queued"},"type":"done"}"#)
        let hello = WireJSON.encode(ServerMessage.hello(uid: "u", transport: .webSocket, head: 7, admin: false, reset: false))
        #expect(hello.contains(#""head":7"#) && !hello.contains(#""seq""#))
        #expect(WireJSON.encode(ServerMessage.submitted(task, duplicate: false, ref: nil)).contains(#""args":{"a":1,"b":["x/y"]}"#))
    }

    /// A property added to one of these types must be written by `WireWriter` too: this fails until it is (and the
    /// expected count here is updated).
    @Test func everyStoredPropertyIsWritten() {
        #expect(Mirror(reflecting: Self.task(finished: true)).children.count == 17)
        #expect(Mirror(reflecting: ServerMessage(type: "x")).children.count == 20)
        #expect(Mirror(reflecting: ClientInfo(id: "c", uid: "u", transport: .sse, remote: nil, admin: false)).children.count == 7)
    }
}
