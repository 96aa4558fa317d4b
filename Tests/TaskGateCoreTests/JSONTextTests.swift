import Foundation
import Testing

@testable import TaskGateCore

/// Args and results travel as the text they arrived as: parsed once, then copied, never written out again.
@Suite("JSON text", .timeLimit(.minutes(1)))
struct JSONTextTests {
    func decoded(_ text: String) throws -> ClientMessage {
        try ClientMessage.decode(Array(text.utf8)).get()
    }

    @Test func compactArgsAreKeptByteForByte() throws {
        // Key order, escapes and number spelling as the client wrote them.
        let args = #"{"z":1.50,"a":"\u0041\/b","id":"t1","nested":{"b":[1,{"c":null}],"a":true}}"#
        let message = try decoded(#"{ "cmd" : "echo", "args":"# + args + #", "ref" : 7 }"#)
        #expect(message.argsText?.text == args)
        #expect(message.args["a"] == "A/b" && message.args["z"] == 1.5)
        #expect(message.argsText?.value == .object(message.args))
    }

    @Test func argsWithWhitespaceOrRepeatedTopLevelKeysAreWrittenOutCompactly() throws {
        let spaced = try decoded(#"{"cmd":"echo","args":{ "b" : 2, "a" : [1, 2] }}"#)
        #expect(spaced.argsText == nil && spaced.args == ["a": [1, 2], "b": 2])
        // A repeated top-level key: this parser keeps the first, other languages' the last, and the server reads
        // options there, so the text is not passed on. Deeper down the args are only read by the handler.
        let repeated = try decoded(#"{"cmd":"echo","args":{"id":"a","n":1,"id":"b"}}"#)
        #expect(repeated.argsText == nil && repeated.args == ["id": "a", "n": 1])
        let nested = try decoded(#"{"cmd":"echo","args":{"a":{"x":1,"x":2}}}"#)
        #expect(nested.argsText?.text == #"{"a":{"x":1,"x":2}}"# && nested.args["a"] == ["x": 1])
        #expect(try JSONText(validating: #"{ "b" : 2, "a" : [1, 2] }"#).text == #"{"a":[1,2],"b":2}"#)
        #expect(try JSONText(validating: #"{"a":1,"a":2}"#).text == #"{"a":1}"#)
        #expect(try JSONText(validating: #"["x",{"k":"v"}]"#).text == #"["x",{"k":"v"}]"#)
        #expect(throws: WireParser.SyntaxError.self) { try JSONText(validating: "{oops}") }
    }

    @Test func aRepeatedArgsKeyKeepsTheFirstArgs() throws {
        let message = try decoded(#"{"cmd":"echo","args":{"n":1},"args":{"n":2}}"#)
        #expect(message.args == ["n": 1] && message.argsText?.text == #"{"n":1}"#)
    }

    @Test func membersReadsOnlyTheNamedTopLevelKeys() {
        let text = JSONText(trusted: #"{"s":"}\"{,]","deep":[{"timeout_ms":1}],"timeout_ms":250,"x":-1e2,"max_attempts":3,"timeout_ms":9}"#)
        #expect(text.members(named: ["timeout_ms", "max_attempts"]) == ["timeout_ms": 250, "max_attempts": 3])
        #expect(text["x"] == -100 && text["s"] == "}\"{,]" && text["missing"] == nil)
        #expect(JSONText.null.members(named: ["a"]).isEmpty && JSONText(trusted: "[1]")["a"] == nil)
        #expect(JSONText(trusted: #"{"a":true,"b":null}"#).members(named: ["a", "b"]) == ["a": true, "b": .null])
    }

    /// Every random object, written compactly, gives each of its members back through `members(named:)`.
    @Test func membersAgreesWithTheParserOnRandomObjects() throws {
        var random = SplitMix64(state: 1203)
        func value(depth: Int) -> JSONValue {
            switch Int.random(in: 0..<(depth > 4 ? 4 : 6), using: &random) {
            case 0: return .null
            case 1: return .bool(Bool.random(using: &random))
            case 2: return .number([0, -1, 1.5, 1e300, -2.25e-7].randomElement(using: &random)!)
            case 3: return .string(["", "a\"b", "}]\\", "é\u{1F389}", ",:"].randomElement(using: &random)!)
            case 4: return .array((0..<Int.random(in: 0...3, using: &random)).map { _ in value(depth: depth + 1) })
            default:
                return .object(Dictionary(
                    (0..<Int.random(in: 0...3, using: &random)).map { ("k\($0)", value(depth: depth + 1)) }, uniquingKeysWith: { a, _ in a }))
            }
        }
        for _ in 0..<2_000 {
            let object = Dictionary((0..<Int.random(in: 0...5, using: &random)).map { ("m\($0)", value(depth: 1)) }, uniquingKeysWith: { a, _ in a })
            let text = JSONText.object(object)
            #expect(text.members(named: Set(object.keys)) == object, "\(text.text)")
            #expect(try JSONText(validating: text.text).text == text.text)
        }
    }

    @Test func equalityIsByValue() {
        #expect(JSONText(trusted: #"{"b":2,"a":1}"#) == ["a": 1, "b": 2])
        #expect(JSONText(trusted: #"{"b":2,"a":1}"#).hashValue == JSONText(["a": 1, "b": 2]).hashValue)
        #expect(JSONText(trusted: "1.0") == 1 && JSONText(trusted: "[1]") != [2])
    }

    /// The echo path end to end: the client's bytes are the task's args and its result, on every event.
    @Test func anEchoTaskCarriesTheClientsTextThrough() async throws {
        let gateway = Gateway(registry: try SwiftHandlerRegistry { BuiltinHandlers.all() })
        let args = #"{"z":"last","a":[1,2.50],"id":"kept"}"#
        let message = try decoded(#"{"cmd":"echo","args":"# + args + "}")
        let submitted = try await gateway.submit(cmd: message.cmd, argsText: try #require(message.argsText), uid: "u").task
        #expect(submitted.args.text == args)
        let done = try await gateway.finished(submitted.id)
        #expect(done.status == .succeeded && done.result?.text == args)
        let event = WireJSON.encode(ServerMessage.done(done, seq: 1))
        #expect(event.contains(#""result":"# + args))
    }

    @Test func argsTooLargeAreMeasuredAsSent() async throws {
        let gateway = Gateway(
            configuration: .init(maxArgsBytes: 64), registry: try SwiftHandlerRegistry { BuiltinHandlers.all() })
        let big = try decoded(#"{"cmd":"echo","args":{"s":""# + String(repeating: "x", count: 80) + #""}}"#)
        await #expect(throws: GatewayError.self) {
            try await gateway.submit(cmd: big.cmd, argsText: try #require(big.argsText), uid: "u")
        }
    }
}

/// Args kept as text are read by the gateway for their options only, unless the handler validates them.
@Suite("Args as text at the gateway", .timeLimit(.minutes(1)))
struct ArgsTextGatewayTests {
    /// Counts its validations; `validatesArgs` as given.
    private struct Strict: TaskHandler {
        let name: String
        let summary = "refuses every args it validates"
        let validatesArgs: Bool
        func validate(_ args: [String: JSONValue]) throws(GatewayError) {
            throw .badRequest("refused: \(args.keys.sorted())")
        }
        func run(_ context: TaskContext) async throws -> JSONValue { .null }
    }

    func text(_ json: String) throws -> JSONText {
        try #require(try ClientMessage.decode(Array(#"{"cmd":"x","args":\#(json)}"#.utf8)).get().argsText)
    }

    @Test func optionsAreReadOutOfTheText() async throws {
        let gateway = Gateway(registry: try SwiftHandlerRegistry { BuiltinHandlers.all() })
        let task = try await gateway.submit(
            cmd: "echo", argsText: text(#"{"rows":[{"id":"not this"}],"id":"mine","priority":3,"delay_ms":60000}"#), uid: "u"
        ).task
        #expect(task.id == Gateway.scopedTaskID("mine", uid: "u") && task.priority == 3 && task.status == .scheduled)
        for bad in [#"{"timeout_ms":0}"#, #"{"id":"a b"}"#, #"{"priority":"high"}"#, #"{"max_attempts":11}"#] {
            await #expect(throws: GatewayError.self, "\(bad)") {
                try await gateway.submit(cmd: "echo", argsText: try text(bad), uid: "u")
            }
        }
    }

    @Test func handlersThatValidateGetTheWholeArgs() async throws {
        let gateway = Gateway(registry: try SwiftHandlerRegistry {
            [Strict(name: "strict", validatesArgs: true), Strict(name: "lenient", validatesArgs: false)] + BuiltinHandlers.all()
        })
        do {
            _ = try await gateway.submit(cmd: "strict", argsText: try text(#"{"b":{"deep":[1]},"a":1}"#), uid: "u")
            Issue.record("a handler that validates was not asked")
        } catch {
            #expect((error as? GatewayError)?.info == "refused: [\"a\", \"b\"]")
        }
        // A handler that does not validate is never asked; sleep validates its `ms` off the text as from REST.
        _ = try await gateway.submit(cmd: "lenient", argsText: try text(#"{"a":1}"#), uid: "u")
        await #expect(throws: GatewayError.self) {
            try await gateway.submit(cmd: "sleep", argsText: try text(#"{"ms":-5}"#), uid: "u")
        }
    }
}
