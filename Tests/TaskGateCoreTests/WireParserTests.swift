import Foundation
import Testing

@testable import TaskGateCore

/// `WireParser` must accept what `JSONDecoder` accepts (decoding `JSONValue`), with the same value, and reject the rest.
@Suite("Wire JSON parser")
struct WireParserTests {
    func foundation(_ bytes: [UInt8]) -> JSONValue? {
        try? WireJSON.decoder.decode(JSONValue.self, from: Data(bytes))
    }

    func fast(_ bytes: [UInt8]) -> JSONValue? {
        try? WireParser.parse(bytes)
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
        }
        for bytes: [UInt8] in [[0x22, 0xFF, 0x22], [0x22, 0xC3, 0x22], [0x7B, 0xFF, 0xFE, 0x7D], [0x22, 0xED, 0xA0, 0x80, 0x22]] {
            #expect(fast(bytes) == foundation(bytes), "\(bytes)")
        }
    }

    @Test func deepNestingIsRefusedNotACrash() {
        let deep = Array(String(repeating: "[", count: 100_000).utf8)
        #expect(fast(deep) == nil)
        let fine = Array((String(repeating: "[", count: 100) + String(repeating: "]", count: 100)).utf8)
        #expect(fast(fine) == foundation(fine))
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
        }
    }
}
