import Foundation
import Testing

@testable import TaskGateCore

@Suite("Client message decoding", .timeLimit(.minutes(2)))
struct ClientMessageDecodingTests {
    func decode(_ text: String) -> Result<ClientMessage, ClientMessage.DecodeFailure> {
        ClientMessage.decode(Array(text.utf8))
    }

    @Test func decodesAFullMessage() throws {
        let message = try decode(#"{"cmd":"sleep","args":{"ms":300,"id":"a1"},"ref":"r-1"}"#).get()
        #expect(message.cmd == "sleep")
        #expect(message.args["ms"] == .number(300))
        #expect(message.args["id"] == .string("a1"))
        #expect(message.ref == "r-1")
    }

    @Test func argsAndRefAreOptional() throws {
        let message = try decode(#"{"cmd":"ping"}"#).get()
        #expect(message.args.isEmpty)
        #expect(message.ref == nil)
    }

    @Test func numericRefIsEchoedAsText() throws {
        #expect(try decode(#"{"cmd":"ping","ref":7}"#).get().ref == "7")
    }

    @Test(arguments: [
        ("", "message is not valid JSON"),
        ("{", "message is not valid JSON"),
        ("hello", "message is not valid JSON"),
        ("[1,2]", "message must be a JSON object"),
        ("42", "message must be a JSON object"),
        ("null", "message must be a JSON object"),
        (#"{"args":{}}"#, "message has no 'cmd'"),
        (#"{"cmd":5}"#, "'cmd' must be a non-empty string of at most 64 bytes"),
        (#"{"cmd":""}"#, "'cmd' must be a non-empty string of at most 64 bytes"),
        (#"{"cmd":null}"#, "'cmd' must be a non-empty string of at most 64 bytes"),
        (#"{"cmd":"echo","args":[1]}"#, "'args' must be an object"),
        (#"{"cmd":"echo","args":"x"}"#, "'args' must be an object"),
        (#"{"cmd":"echo","ref":{"a":1}}"#, "'ref' must be a string"),
    ])
    func rejectsBadInput(text: String, info: String) {
        guard case .failure(let failure) = decode(text) else {
            Issue.record("accepted \(text)")
            return
        }
        #expect(failure.error.kind == .badRequest)
        #expect(failure.error.code == 400)
        #expect(failure.error.info == info)
    }

    @Test func refSurvivesAnInvalidMessage() {
        guard case .failure(let failure) = decode(#"{"ref":"abc","args":5}"#) else {
            Issue.record("accepted")
            return
        }
        #expect(failure.ref == "abc")
    }

    @Test func invalidUTF8IsABadRequest() {
        guard case .failure(let failure) = ClientMessage.decode([0x7B, 0xFF, 0xFE, 0x7D]) else {
            Issue.record("accepted")
            return
        }
        #expect(failure.error.kind == .badRequest)
    }

    @Test func overlongCommandIsRejected() {
        let text = #"{"cmd":""# + String(repeating: "x", count: 65) + #""}"#
        guard case .failure = decode(text) else {
            Issue.record("accepted")
            return
        }
    }
}

@Suite("Wire encoding", .timeLimit(.minutes(2)))
struct WireEncodingTests {
    @Test func taskEncodesEveryFieldIncludingNulls() throws {
        let task = TaskRecord(id: "t-1", cmd: "echo", uid: nil, args: ["a": 1], createdAt: Date(timeIntervalSince1970: 0))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(WireJSON.encode(task).utf8)) as? [String: Any])
        #expect(Set(object.keys) == ["id", "cmd", "uid", "args", "status", "progress", "result", "error", "attempts", "createdAt", "startedAt", "finishedAt", "node", "traceparent", "priority", "runAt", "schedule"])
        #expect(object["traceparent"] is NSNull)
        #expect(object["uid"] is NSNull)
        #expect(object["createdAt"] as? String == "1970-01-01T00:00:00.000Z")
        #expect(object["status"] as? String == "queued")
    }

    @Test func timestampsRoundTrip() throws {
        let date = Date(timeIntervalSince1970: 1_764_100_000.123)
        let parsed = try #require(WireJSON.parseTimestamp(WireJSON.formatTimestamp(date)))
        #expect(abs(parsed.timeIntervalSince(date)) < 0.001)
        #expect(WireJSON.formatTimestamp(date) == "2025-11-25T19:46:40.123Z")
        // Printing what was read back gives the same text, whatever the sub-millisecond part was.
        for offset in stride(from: 0.0, to: 0.002, by: 0.0001) {
            let text = WireJSON.formatTimestamp(Date(timeIntervalSince1970: 1_764_100_601.455 + offset))
            #expect(WireJSON.formatTimestamp(WireJSON.parseTimestamp(text)!) == text)
        }
    }

    @Test func errorMessageCarriesCodeSlugAndRef() {
        let text = WireJSON.encode(ServerMessage.error(.unknownCommand("nope"), ref: "r"))
        #expect(text == #"{"code":404,"error":"unknown_command","info":"unknown command 'nope'","ref":"r","type":"error"}"#)
    }

    @Test func jsonValueRoundTrips() throws {
        let text = #"{"a":[1,2.5,"x",true,null,{"b":{}}]}"#
        let value = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        #expect(WireJSON.encode(value) == text)
    }

    @Test func statusCodesFollowTheProtocol() {
        let expected: [GatewayError.Kind: Int] = [
            .badRequest: 400, .unauthorized: 401, .forbidden: 403, .unknownCommand: 404, .notFound: 404,
            .alreadyFinished: 409, .tooLarge: 413, .queueFull: 503, .internalError: 500,
        ]
        for (kind, code) in expected { #expect(kind.code == code, "\(kind)") }
    }
}

@Suite("Identifiers", .timeLimit(.minutes(2)))
struct IdentifierTests {
    @Test func taskIDs() {
        #expect(Identifier.isValidTaskID("report-2026.11:a_b"))
        #expect(!Identifier.isValidTaskID(""))
        #expect(!Identifier.isValidTaskID("a b"))
        #expect(!Identifier.isValidTaskID("a/b"))
        #expect(!Identifier.isValidTaskID("é"))
        #expect(Identifier.isValidTaskID(String(repeating: "a", count: 128)))
        #expect(!Identifier.isValidTaskID(String(repeating: "a", count: 129)))
    }

    @Test func uids() {
        #expect(Identifier.isValidUID("alice@example.com"))
        #expect(!Identifier.isValidUID("alice example"))
        #expect(!Identifier.isValidUID("<script>"))
    }
}
