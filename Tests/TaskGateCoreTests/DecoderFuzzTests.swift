import Foundation
import Testing

@testable import TaskGateCore

/// A small, seeded generator, so a failing case can be replayed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Decoder fuzzing (bounded)", .timeLimit(.minutes(2)))
struct DecoderFuzzTests {
    static let seeds: [String] = [
        #"{"cmd":"sleep","args":{"ms":300,"id":"a1"},"ref":"r-1"}"#, #"{"cmd":"ping"}"#, #"{"cmd":"status","args":{"id":"x"}}"#,
        #"{"cmd":"echo","args":{"nested":[1,{"a":null}],"t":true}}"#, "[]", "{}", #"{"cmd":""}"#,
    ]

    /// Arbitrary bytes and mutations of valid messages: the decoder never crashes and every failure is a typed 400.
    @Test func clientMessagesNeverCrashAndFailAsBadRequest() {
        var random = SplitMix64(state: 20261125)
        for iteration in 0..<20_000 {
            var bytes: [UInt8]
            if iteration.isMultiple(of: 2) {
                bytes = (0..<Int.random(in: 0...64, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            } else {
                bytes = Array(Self.seeds[Int.random(in: 0..<Self.seeds.count, using: &random)].utf8)
                for _ in 0..<Int.random(in: 1...4, using: &random) where !bytes.isEmpty {
                    let index = Int.random(in: 0..<bytes.count, using: &random)
                    switch Int.random(in: 0..<3, using: &random) {
                    case 0: bytes[index] = UInt8.random(in: 0...255, using: &random)
                    case 1: bytes.remove(at: index)
                    default: bytes.insert(Array(#"{}[]":,\0"#.utf8).randomElement(using: &random)!, at: index)
                    }
                }
            }
            switch ClientMessage.decode(bytes) {
            case .success(let message):
                #expect(!message.cmd.isEmpty && message.cmd.utf8.count <= 64)
            case .failure(let failure):
                #expect(failure.error.kind == .badRequest, "input \(bytes)")
            }
        }
    }

    /// Config files: any bytes give a config or a `ConfigError`, and the syntax locator always terminates.
    @Test func configParsingNeverCrashes() {
        var random = SplitMix64(state: 7)
        let seed = Array(#"{"handlers": {"a": {"type": "command", "command": ["x"], /* c */ "timeout_ms": 5,},}}"#.utf8)
        for _ in 0..<3_000 {
            var bytes = seed
            for _ in 0..<Int.random(in: 1...6, using: &random) where !bytes.isEmpty {
                bytes[Int.random(in: 0..<bytes.count, using: &random)] = Array(#"{}[]":,/*"' a1"#.utf8).randomElement(using: &random)!
            }
            do {
                _ = try ConfigLoader.parse(Data(bytes), file: "fuzz.json")
            } catch {
                #expect(error.file == "fuzz.json")
            }
            _ = JSONSyntaxLocator.firstError(in: bytes)
        }
    }

    @Test func identifiersRejectEverythingOutsideTheAlphabet() {
        var random = SplitMix64(state: 99)
        for _ in 0..<5_000 {
            let scalars = (0..<Int.random(in: 0...140, using: &random)).map { _ in
                Character(UnicodeScalar(UInt8.random(in: 0...127, using: &random)))
            }
            let text = String(scalars)
            let expected = (1...128).contains(text.utf8.count) && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._:@-".contains($0)) }
            #expect(Identifier.isValidUID(text) == expected, "\(text.debugDescription)")
        }
    }
}
