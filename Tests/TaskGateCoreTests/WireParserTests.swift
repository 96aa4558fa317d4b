import Foundation
import Testing

@testable import TaskGateCore

/// `WireParser` must accept what `JSONDecoder` accepts (decoding `JSONValue`), with the same value, and reject the rest.
@Suite("Wire JSON parser", .timeLimit(.minutes(2)))
struct WireParserTests {
    func foundation(_ bytes: [UInt8]) -> JSONValue? {
        try? WireJSON.decoder.decode(JSONValue.self, from: Data(bytes))
    }

    func fast(_ bytes: [UInt8]) -> JSONValue? {
        try? WireParser.parse(bytes)
    }

    /// `parseMessage` (its args checked, not built) read back whole: the same as `parse`, or `nil` where it fails.
    func split(_ bytes: [UInt8]) -> JSONValue? {
        guard let (value, args) = try? WireParser.parseMessage(bytes) else { return nil }
        guard case .object(var members) = value, let args else { return value }
        switch args {
        case .text(let text): members["args"] = text.value
        case .value(let value): members["args"] = value
        }
        return .object(members)
    }

    static let cases: [String] = [
        #"{"cmd":"ping"}"#, #" { "cmd" : "echo" , "args" : { "a" : [ 1 , 2.5 , -3e2 , true , false , null ] } } "#,
        "[]", "{}", "0", "-0", "1", "-1", "1.5", "1e3", "1E+3", "1e-3", "0.000001", "123456789012345678901234567890",
        "1e308", "1e309", "-1e309", "01", "1.", ".5", "-", "+1", "1e", "1e+", "0x10", "NaN", "Infinity", "true", "false",
        "null", "tru", "nul", #""""#, #""a""#, #""\"\\\/\b\f\n\r\t""#, #""\u0041\u00e9\u4e2d""#, #""\ud83c\udf89""#,
        #""\ud83c""#, #""\udf89""#, #""\ud83cx""#, #""\u12""#, #""\x""#, "\"a\u{01}b\"", "\"tab\tin\"", #""é 中 🎉""#,
        "[1,]", "[,1]", "{\"a\":1,}", "{,}", "{\"a\"}", "{\"a\":}", "{1:2}", "[1 2]", "[1,,2]", "{\"a\":1 \"b\":2}",
        "/* c */ {}", "{} x", "[[[[]]]]", "\u{FEFF}{}", "{\"a\":1,\"a\":2}", "{\"a\":{\"b\":[{\"c\":null}]}}", " ", "",
        "0e1", "0E1", "1E1", "0.5E1", "10E1", "0e+1", "-0E1", "0.0E1", "[0E1]", "[0e1]", "\t\n\r {}\t\n\r", "[\"\\u0000\"]", "1.0", "-0.0", "100", "[1e400]", "\"\u{7F}\"",
    ]

    @Test func agreesWithJSONDecoder() {
        for text in Self.cases {
            let bytes = Array(text.utf8)
            #expect(fast(bytes) == foundation(bytes), "\(text.debugDescription)")
            // Each case as a message's args, which `parseMessage` checks without building.
            let message = Array((#"{"cmd":"x","args":{"v":"# + text + "}}").utf8)
            #expect(split(message) == fast(message), "\(text.debugDescription)")
        }
        for bytes: [UInt8] in [[0x22, 0xFF, 0x22], [0x22, 0xC3, 0x22], [0x7B, 0xFF, 0xFE, 0x7D], [0x22, 0xED, 0xA0, 0x80, 0x22]] {
            #expect(fast(bytes) == foundation(bytes), "\(bytes)")
        }
    }

    /// Numbers checked without conversion (no exponent, at most 308 digits before the point) and those converted
    /// to be refused when a `Double` cannot hold them, on both sides of the line.
    @Test func longNumbersAreRefusedOnlyBeyondADouble() {
        let nines308 = String(repeating: "9", count: 308), nines309 = String(repeating: "9", count: 309)
        for text in [nines308, "-" + nines308, nines309, "-" + nines309, "1" + String(repeating: "0", count: 400), nines308 + ".5", "1" + String(repeating: "0", count: 307) + "e1"] {
            let bytes = Array(text.utf8)
            #expect(fast(bytes) == foundation(bytes), "\(text.count) characters")
            let message = Array((#"{"cmd":"x","args":{"v":"# + text + "}}").utf8)
            #expect(split(message) == fast(message), "\(text.count) characters")
        }
    }

    /// The options read while a message's args are checked are the ones a scan of the kept text finds.
    @Test func argsMembersReadWhileCheckingMatchAScanOfTheText() throws {
        let names = ReservedArguments.names
        for message in [
            #"{"cmd":"echo","args":{"rows":[{"a":1},{"b":"x"}],"id":"job-1","timeout_ms":250,"priority":3}}"#,
            #"{"cmd":"echo","args":{"n":1}}"#,
            #"{"cmd":"echo","args":{"timeout_ms":{"nested":1},"max_attempts":"two","run_at":null,"delay_ms":1.5e3}}"#,
            #"{"cmd":"echo","args":{}}"#,
        ] {
            let (_, args) = try WireParser.parseMessage(Array(message.utf8), readingArgsMembers: names)
            guard case .text(let text) = try #require(args) else {
                Issue.record("args not kept as text: \(message)")
                continue
            }
            #expect(text.known != nil)
            #expect(text.members(named: names) == WireParser.members(of: text.text.utf8, named: names), "\(message)")
            #expect(text.members(named: TaskOptions.argumentNames) == WireParser.members(of: text.text.utf8, named: TaskOptions.argumentNames))
            // A name the parser did not read is found by a scan.
            #expect(text.members(named: ["n"]) == WireParser.members(of: text.text.utf8, named: ["n"]))
        }
        // Repeated keys: the args are built after all, and the first of the repeated ones counts.
        let (_, repeated) = try WireParser.parseMessage(Array(#"{"cmd":"echo","args":{"id":"a","id":"b"}}"#.utf8), readingArgsMembers: names)
        #expect(repeated == .value(.object(["id": .string("a")])))
    }

    @Test func deepNestingIsRefusedNotACrash() throws {
        let deep = Array(String(repeating: "[", count: 100_000).utf8)
        #expect(fast(deep) == nil)
        let limit = JSONLimits.maxDepth
        let fine = Array((String(repeating: "[", count: limit) + String(repeating: "]", count: limit)).utf8)
        #expect(fast(fine) != nil)
        #expect(fast(fine) == foundation(fine))
        let tooDeep = Array((String(repeating: "[", count: limit + 1) + String(repeating: "]", count: limit + 1)).utf8)
        #expect(fast(tooDeep) == nil)
        #expect(try WireParser.parse(fine).nestingDepth() == limit)
    }

    /// The property the nesting limit exists for: whatever the parser accepts, the writer writes, and the parser
    /// reads back equal (no input can make a reply or a stored record unwritable).
    @Test func whatTheParserAcceptsTheWriterWritesBack() throws {
        var random = SplitMix64(state: 64)
        func value(depth: Int) -> JSONValue {
            switch Int.random(in: 0..<(depth >= JSONLimits.maxDepth ? 4 : 7), using: &random) {
            case 0: return .null
            case 1: return .bool(Bool.random(using: &random))
            case 2: return .number([0, -1, 1.5, 1e300, -2.25e-7, 123_456_789_012].randomElement(using: &random)!)
            case 3: return .string(["", "a\"b", "é\u{1F389}", "\u{0}\n", "/x/"].randomElement(using: &random)!)
            case 4, 5:
                // Mostly one child, so that deep values are common.
                let count = Int.random(in: 0...(Bool.random(using: &random) ? 1 : 3), using: &random)
                return .array((0..<count).map { _ in value(depth: depth + 1) })
            default:
                let count = Int.random(in: 0...2, using: &random)
                return .object(Dictionary((0..<count).map { ("k\($0)", value(depth: depth + 1)) }, uniquingKeysWith: { a, _ in a }))
            }
        }
        for _ in 0..<3_000 {
            let original = value(depth: 0)
            let written = WireJSON.encode(original)
            let read = try WireParser.parse(Array(written.utf8))
            #expect(read == original, "\(written)")
        }
        // The deepest value the parser takes, written and read again.
        var nested = JSONValue.string("bottom")
        for level in 0..<JSONLimits.maxDepth { nested = level.isMultiple(of: 2) ? .array([nested]) : .object(["k": nested]) }
        let deepest = try WireParser.parse(Array(WireJSON.encode(nested).utf8))
        #expect(deepest == nested)
    }

    @Test func agreesOnMutatedMessages() {
        var random = SplitMix64(state: 20261201)
        let seeds = DecoderFuzzTests.seeds + [
            #"{"cmd":"echo","args":{"s":"a\"b\\c\u00e9\ud83c\udf89","n":-12.5e-3,"l":[0,1,2]}}"#,
        ]
        for iteration in 0..<20_000 {
            var bytes: [UInt8]
            if iteration.isMultiple(of: 4) {
                bytes = (0..<Int.random(in: 0...16, using: &random)).map { _ in
                    Array(#"{}[]":,\0123456789.eE+-truefalsnu "#.utf8).randomElement(using: &random)!
                }
            } else {
                bytes = Array(seeds[Int.random(in: 0..<seeds.count, using: &random)].utf8)
                for _ in 0..<Int.random(in: 1...3, using: &random) where !bytes.isEmpty {
                    let index = Int.random(in: 0..<bytes.count, using: &random)
                    switch Int.random(in: 0..<3, using: &random) {
                    case 0: bytes[index] = UInt8.random(in: 0...255, using: &random)
                    case 1: bytes.remove(at: index)
                    default: bytes.insert(Array(#"{}[]":,\0.e-"#.utf8).randomElement(using: &random)!, at: index)
                    }
                }
            }
            #expect(fast(bytes) == foundation(bytes), "input \(bytes) \(String(decoding: bytes, as: UTF8.self).debugDescription)")
            #expect(split(bytes) == fast(bytes), "input \(String(decoding: bytes, as: UTF8.self).debugDescription)")
        }
    }
}
