/// Finds where a config file stops being valid JSON (with the JSON5 comments and trailing commas we allow), since
/// Foundation's decoder says only that the data is not valid. Used only to explain a file that failed to decode.
struct JSONSyntaxLocator {
    struct Failure: Error, Equatable {
        var line: Int
        var column: Int
        var problem: String
    }

    private let bytes: [UInt8]
    private var index = 0
    private var line = 1
    private var column = 1
    /// Containers open around the current position; held to the wire's nesting limit (no recursion without end).
    private var depth = 0

    static func firstError(in bytes: [UInt8]) -> Failure? {
        var locator = JSONSyntaxLocator(bytes: bytes)
        do throws(Failure) {
            try locator.skipSpace()
            try locator.value()
            try locator.skipSpace()
            if locator.index < bytes.count { throw locator.fail("unexpected text after the end of the document") }
            return nil
        } catch {
            return error
        }
    }

    private init(bytes: [UInt8]) { self.bytes = bytes }

    private func fail(_ problem: String) -> Failure { Failure(line: line, column: column, problem: problem) }

    private var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    private mutating func advance() {
        if bytes[index] == UInt8(ascii: "\n") {
            line += 1
            column = 1
        } else {
            column += 1
        }
        index += 1
    }

    private mutating func skipSpace() throws(Failure) {
        while let byte = current {
            if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") {
                advance()
            } else if byte == UInt8(ascii: "/"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "/") {
                while let next = current, next != UInt8(ascii: "\n") { _ = next; advance() }
            } else if byte == UInt8(ascii: "/"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "*") {
                advance()
                advance()
                while true {
                    guard current != nil else { throw fail("unterminated /* comment") }
                    if current == UInt8(ascii: "*"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "/") {
                        advance()
                        advance()
                        break
                    }
                    advance()
                }
            } else {
                return
            }
        }
    }

    private mutating func value() throws(Failure) {
        guard let byte = current else { throw fail("unexpected end of file") }
        switch byte {
        case UInt8(ascii: "{"): try container(close: UInt8(ascii: "}"), keyed: true)
        case UInt8(ascii: "["): try container(close: UInt8(ascii: "]"), keyed: false)
        case UInt8(ascii: "\""), UInt8(ascii: "'"): try string()
        default:
            let start = index
            while let next = current, !Self.isDelimiter(next) { _ = next; advance() }
            let word = String(decoding: bytes[start..<index], as: UTF8.self)
            guard !word.isEmpty else { throw fail("expected a value, found '\(Character(UnicodeScalar(byte)))'") }
            guard ["true", "false", "null"].contains(word) || Double(word) != nil else {
                throw Failure(line: line, column: column - word.count, problem: "expected a value, found '\(word)'")
            }
        }
    }

    private mutating func container(close: UInt8, keyed: Bool) throws(Failure) {
        guard depth < JSONLimits.maxDepth else { throw fail("nested deeper than \(JSONLimits.maxDepth) levels") }
        depth += 1
        defer { depth -= 1 }
        advance()
        try skipSpace()
        while current != close {
            if keyed {
                guard current == UInt8(ascii: "\"") || current == UInt8(ascii: "'") else {
                    throw fail("expected a quoted key or '\(Character(UnicodeScalar(close)))'")
                }
                try string()
                try skipSpace()
                guard current == UInt8(ascii: ":") else { throw fail("expected ':' after the key") }
                advance()
                try skipSpace()
            }
            try value()
            try skipSpace()
            if current == UInt8(ascii: ",") {
                advance()
                try skipSpace()
            } else if current != close {
                throw fail("expected ',' or '\(Character(UnicodeScalar(close)))'")
            }
        }
        advance()
    }

    private mutating func string() throws(Failure) {
        let quote = bytes[index]
        advance()
        while let byte = current, byte != quote {
            if byte == UInt8(ascii: "\n") { throw fail("line break inside a string") }
            if byte == UInt8(ascii: "\\") { advance() }
            if current != nil { advance() }
        }
        guard current == quote else { throw fail("unterminated string") }
        advance()
    }

    private static func isDelimiter(_ byte: UInt8) -> Bool {
        [UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\t"),
         UInt8(ascii: "\r"), UInt8(ascii: ":"), UInt8(ascii: "/")].contains(byte)
    }
}
