/// A strict JSON parser (RFC 8259) straight into `JSONValue`, for client messages: `JSONDecoder` decoding
/// `JSONValue` tries each case in turn and throws on every miss, which made decoding a ping cost more than the rest
/// of its round trip. It accepts and rejects what `JSONDecoder` does (`WireParserTests` compare the two on valid,
/// invalid and fuzzed input): no comments, trailing commas, leading zeros, lone surrogates, raw control characters in
/// strings, invalid UTF-8 or numbers beyond `Double`; nesting deeper than `JSONLimits.maxDepth` is refused. Like `JSONDecoder`,
/// it skips a byte order mark and accepts one trailing comma in an array or object.
public enum WireParser {
    public struct SyntaxError: Error, Sendable, Equatable {
        public var offset: Int
    }

    public static let maxDepth = JSONLimits.maxDepth

    public static func parse(_ bytes: some Collection<UInt8>) throws(SyntaxError) -> JSONValue {
        let result: Result<JSONValue, SyntaxError>? = bytes.withContiguousStorageIfAvailable { buffer in
            Result { () throws(SyntaxError) -> JSONValue in try parse(buffer: buffer) }
        }
        if let result { return try result.get() }
        let copy = Array(bytes)
        return try copy.withUnsafeBufferPointer { buffer throws(SyntaxError) -> JSONValue in try parse(buffer: buffer) }
    }

    static func parse(buffer: UnsafeBufferPointer<UInt8>) throws(SyntaxError) -> JSONValue {
        var parser = Parser(bytes: buffer)
        return try parser.document()
    }

    /// A client message, with its top-level `args` object checked but not built: the message's `args` member is
    /// left out of the value, and comes back as its text (`JSONText`) when that text can be kept as it is, else as
    /// its value. The args of a task are kilobytes of rows a handler reads, or passes on, far more often than the
    /// server does: it reads a few top-level options out of the text (`JSONText.members`), and the rest only when
    /// a handler validates them. The top-level args members named in `reading` are read on the way (the text keeps
    /// them: `JSONText.members`), so that nothing steps over kilobytes of rows again to find a task's options.
    public static func parseMessage(
        _ bytes: some Collection<UInt8>, readingArgsMembers reading: Set<String> = []
    ) throws(SyntaxError) -> (value: JSONValue, args: MessageArgs?) {
        try withBuffer(bytes) { buffer throws(SyntaxError) in
            var parser = Parser(bytes: buffer, capturesArgs: true, readsArgsMembers: reading)
            let value = try parser.document()
            guard let capture = parser.capturedArgs else { return (value, nil) }
            if let text = parser.keptText(capture, known: JSONText.KnownMembers(names: reading, values: parser.argsMembers)) {
                return (value, .text(text))
            }
            // Not compact, or a top-level key repeated: built after all (rare), and written out compactly.
            var again = Parser(bytes: UnsafeBufferPointer(rebasing: buffer[capture.range]))
            return (value, .value(try again.document()))
        }
    }

    /// A message's `args`, as `parseMessage` found them.
    public enum MessageArgs: Sendable, Equatable {
        case text(JSONText)
        case value(JSONValue)
    }

    /// A whole text, and that text as a `JSONText` when it can be kept as it is.
    static func parseKeepingText(_ bytes: some Collection<UInt8>) throws(SyntaxError) -> (value: JSONValue, text: JSONText?) {
        try withBuffer(bytes) { buffer throws(SyntaxError) in
            var parser = Parser(bytes: buffer)
            let value = try parser.document()
            let whole = Parser.Capture(range: 0..<buffer.count, isCompact: parser.whitespaceRuns == 0 && parser.repeatedKeys == 0)
            return (value, parser.keptText(whole))
        }
    }

    /// The members of a top-level object named in `keys`, parsing only those and stepping over the rest. For text
    /// already validated (`JSONText`): anything else gives what could be read before the first surprise.
    static func members(of bytes: some Collection<UInt8>, named keys: Set<String>) -> [String: JSONValue] {
        (try? withBuffer(bytes) { buffer throws(SyntaxError) in
            var parser = Parser(bytes: buffer)
            return parser.topLevelMembers(named: keys)
        }) ?? [:]
    }

    private static func withBuffer<T>(
        _ bytes: some Collection<UInt8>, _ body: (UnsafeBufferPointer<UInt8>) throws(SyntaxError) -> T
    ) throws(SyntaxError) -> T {
        let result: Result<T, SyntaxError>? = bytes.withContiguousStorageIfAvailable { buffer in
            Result { () throws(SyntaxError) -> T in try body(buffer) }
        }
        if let result { return try result.get() }
        let copy = Array(bytes)
        return try copy.withUnsafeBufferPointer { buffer throws(SyntaxError) -> T in try body(buffer) }
    }

    private struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        var index = 0
        /// Counted so that a captured value can tell whether its text is compact and free of repeated keys.
        var whitespaceRuns = 0
        var repeatedKeys = 0
        let capturesArgs: Bool
        var capturedArgs: Capture?
        /// Top-level members of the captured args read while they are checked (the first of repeated ones).
        let readsArgsMembers: Set<String>
        var argsMembers: [String: JSONValue] = [:]

        struct Capture {
            var range: Range<Int>
            /// No whitespace between its tokens and no repeated keys.
            var isCompact: Bool
        }

        init(bytes: UnsafeBufferPointer<UInt8>, capturesArgs: Bool = false, readsArgsMembers: Set<String> = []) {
            self.bytes = bytes
            self.capturesArgs = capturesArgs
            self.readsArgsMembers = readsArgsMembers
        }

        var error: SyntaxError { SyntaxError(offset: index) }

        mutating func document() throws(SyntaxError) -> JSONValue {
            // Like JSONDecoder: a UTF-8 byte order mark is skipped.
            if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF {
                index = 3
                whitespaceRuns += 1  // not part of any value's text
            }
            skipWhitespace()
            let value = try self.value(depth: 0)
            skipWhitespace()
            guard index == bytes.count else { throw SyntaxError(offset: index) }
            return value
        }

        /// The captured text, when it is compact; `nil`: the caller writes the parsed value out instead.
        func keptText(_ capture: Capture, known: JSONText.KnownMembers? = nil) -> JSONText? {
            guard capture.isCompact else { return nil }
            return JSONText(trusted: String(decoding: UnsafeBufferPointer(rebasing: bytes[capture.range]), as: UTF8.self), known: known)
        }

        /// Checks one value exactly as `value(depth:)` reads it, building nothing (no strings, arrays or
        /// dictionaries). With `collectingKeys`, the value is an object whose keys are decoded and compared: whether
        /// one repeats is returned (below it, repeated keys are left for whoever reads them, with one parser); its
        /// members named in `readsArgsMembers` are read into `argsMembers`.
        mutating func check(depth: Int, collectingKeys: Bool = false) throws(SyntaxError) -> Bool {
            guard index < bytes.count else { throw error }
            switch bytes[index] {
            case UInt8(ascii: "{"):
                var keys = Set<String>()
                var repeats = false
                var readKey = ""
                try checkMembers(closedBy: UInt8(ascii: "}"), depth: depth) { parser throws(SyntaxError) in
                    guard parser.index < parser.bytes.count, parser.bytes[parser.index] == UInt8(ascii: "\"") else { throw parser.error }
                    var reads = false
                    if collectingKeys {
                        let key = try parser.string()
                        if keys.insert(key).inserted {
                            reads = parser.readsArgsMembers.contains(key)
                            if reads { readKey = key }
                        } else {
                            repeats = true
                        }
                    } else {
                        try parser.checkString()
                    }
                    parser.skipWhitespace()
                    guard parser.index < parser.bytes.count, parser.bytes[parser.index] == UInt8(ascii: ":") else { throw parser.error }
                    parser.index += 1
                    parser.skipWhitespace()
                    if reads {
                        // As `value(depth:)` counts: this object's members sit one level below `depth`.
                        parser.argsMembers[readKey] = try parser.value(depth: depth)
                    } else {
                        _ = try parser.check(depth: depth + 1)
                    }
                }
                return repeats
            case UInt8(ascii: "["):
                try checkMembers(closedBy: UInt8(ascii: "]"), depth: depth) { parser throws(SyntaxError) in
                    _ = try parser.check(depth: depth + 1)
                }
                return false
            case UInt8(ascii: "\""):
                try checkString()
                return false
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                try checkNumber()
                return false
            default:
                _ = try value(depth: depth)  // a literal, or an error
                return false
            }
        }

        /// An object's or an array's members, from its opening bracket to `closing`, as `object` and `array` read
        /// them (one trailing comma accepted); `member` checks one.
        mutating func checkMembers(
            closedBy closing: UInt8, depth: Int, _ member: (inout Parser) throws(SyntaxError) -> Void
        ) throws(SyntaxError) {
            guard depth <= WireParser.maxDepth else { throw error }
            index += 1
            skipWhitespace()
            if index < bytes.count, bytes[index] == closing {
                index += 1
                return
            }
            var first = true
            while true {
                skipWhitespace()
                if !first, index < bytes.count, bytes[index] == closing {
                    index += 1
                    return
                }
                first = false
                try member(&self)
                skipWhitespace()
                guard index < bytes.count else { throw error }
                switch bytes[index] {
                case UInt8(ascii: ","): index += 1
                case closing:
                    index += 1
                    return
                default: throw error
                }
            }
        }

        /// A string checked as `string()` reads it: escapes, control characters, UTF-8. ASCII without escapes, the
        /// usual case, is checked in place; anything else is decoded and dropped.
        mutating func checkString() throws(SyntaxError) {
            let start = index
            index += 1
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") {
                    index += 1
                    return
                }
                guard byte >= 0x20, byte < 0x80, byte != UInt8(ascii: "\\") else { break }
                index += 1
            }
            index = start
            _ = try string()
        }

        /// See `WireParser.members(of:named:)`.
        mutating func topLevelMembers(named keys: Set<String>) -> [String: JSONValue] {
            var found: [String: JSONValue] = [:]
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { return found }
            index += 1
            while found.count < keys.count {
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\""), let key = try? string() else { return found }
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return found }
                index += 1
                skipWhitespace()
                if keys.contains(key), found[key] == nil {
                    guard let member = try? value(depth: 1) else { return found }
                    found[key] = member
                } else {
                    guard skipValue() else { return found }
                }
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ",") else { return found }
                index += 1
            }
            return found
        }

        /// Steps over one value of text known to be valid, reading only its brackets and string quotes.
        mutating func skipValue() -> Bool {
            var depth = 0
            while index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: "\""):
                    index += 1
                    while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
                        index += bytes[index] == UInt8(ascii: "\\") ? 2 : 1
                    }
                    index += 1
                    if depth == 0 { return index <= bytes.count }
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    depth += 1
                    index += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    if depth == 0 { return true }  // the end of the enclosing object: a scalar ended here
                    depth -= 1
                    index += 1
                    if depth == 0 { return true }
                case UInt8(ascii: ","), 0x20, 0x09, 0x0A, 0x0D:
                    if depth == 0 { return true }
                    index += 1
                default:
                    index += 1
                }
            }
            return depth == 0
        }

        mutating func skipWhitespace() {
            let start = index
            defer { if index != start { whitespaceRuns += 1 } }
            while index < bytes.count {
                switch bytes[index] {
                case 0x20, 0x09, 0x0A, 0x0D: index += 1
                default: return
                }
            }
        }

        mutating func value(depth: Int) throws(SyntaxError) -> JSONValue {
            guard index < bytes.count else { throw error }
            switch bytes[index] {
            case UInt8(ascii: "{"): return try object(depth: depth + 1)
            case UInt8(ascii: "["): return try array(depth: depth + 1)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
            default: throw error
            }
        }

        mutating func literal(_ word: StaticString) throws(SyntaxError) {
            let count = word.utf8CodeUnitCount
            guard bytes.count - index >= count else { throw error }
            for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] { throw error }
            index += count
        }

        mutating func object(depth: Int) throws(SyntaxError) -> JSONValue {
            guard depth <= WireParser.maxDepth else { throw error }
            index += 1
            var members: [String: JSONValue] = [:]
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(members)
            }
            while true {
                skipWhitespace()
                // Like JSONDecoder: a trailing comma is accepted.
                if !members.isEmpty, index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                    index += 1
                    return .object(members)
                }
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error }
                let key = try string()
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw error }
                index += 1
                skipWhitespace()
                if capturesArgs, depth == 1, key == "args", members[key] == nil, capturedArgs == nil,
                    index < bytes.count, bytes[index] == UInt8(ascii: "{")
                {
                    // The message's args: checked, not built (see `parseMessage`); left out of the message's value.
                    let start = index, runs = whitespaceRuns
                    let repeatsTopLevel = try check(depth: depth + 1, collectingKeys: true)
                    capturedArgs = Capture(range: start..<index, isCompact: whitespaceRuns == runs && !repeatsTopLevel)
                    members[key] = .null  // taken: a repeated `args` is dropped, as any repeated key is
                } else {
                    let member = try value(depth: depth)
                    // As JSONDecoder decoding a dictionary: of repeated keys, the first one counts.
                    if members[key] == nil { members[key] = member } else { repeatedKeys += 1 }
                }
                skipWhitespace()
                guard index < bytes.count else { throw error }
                switch bytes[index] {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "}"):
                    index += 1
                    return .object(members)
                default: throw error
                }
            }
        }

        mutating func array(depth: Int) throws(SyntaxError) -> JSONValue {
            guard depth <= WireParser.maxDepth else { throw error }
            index += 1
            var elements: [JSONValue] = []
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(elements)
            }
            while true {
                skipWhitespace()
                if !elements.isEmpty, index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                    index += 1
                    return .array(elements)
                }
                elements.append(try value(depth: depth))
                skipWhitespace()
                guard index < bytes.count else { throw error }
                switch bytes[index] {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "]"):
                    index += 1
                    return .array(elements)
                default: throw error
                }
            }
        }

        /// A number checked as `number()` reads it. Without an exponent and with at most 308 digits before its point,
        /// it cannot be beyond a `Double`: only other numbers are converted, to be refused as `JSONDecoder` does.
        mutating func checkNumber() throws(SyntaxError) {
            let start = index
            let mayOverflow = try scanNumber()
            if mayOverflow { _ = try convertNumber(from: start) }
        }

        mutating func number() throws(SyntaxError) -> Double {
            let start = index
            _ = try scanNumber()
            return try convertNumber(from: start)
        }

        /// Steps over a number's text, as RFC 8259 and `JSONDecoder` spell one; whether it may be too large for a
        /// `Double` (it has an exponent, or more than 308 digits before its point).
        mutating func scanNumber() throws(SyntaxError) -> Bool {
            let start = index
            if bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard index < bytes.count else { throw error }
            if bytes[index] == UInt8(ascii: "0") {
                index += 1
            } else if isDigit(bytes[index]) {
                while index < bytes.count, isDigit(bytes[index]) { index += 1 }
            } else {
                throw error
            }
            let integerDigits = index - start
            if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
                index += 1
                guard index < bytes.count, isDigit(bytes[index]) else { throw error }
                while index < bytes.count, isDigit(bytes[index]) { index += 1 }
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
                // JSONDecoder's quirk, matched: it refuses `0e1` (but takes `0e+1`, `-0e1` and `0.0e1`).
                let bareZero = index == start + 1 && bytes[start] == UInt8(ascii: "0")
                index += 1
                if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                    index += 1
                } else if bareZero {
                    throw SyntaxError(offset: start)
                }
                guard index < bytes.count, isDigit(bytes[index]) else { throw error }
                while index < bytes.count, isDigit(bytes[index]) { index += 1 }
                return true
            }
            return integerDigits > 308
        }

        /// The number whose text runs from `start` to `index`.
        func convertNumber(from start: Int) throws(SyntaxError) -> Double {
            let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
            // JSONDecoder refuses numbers a Double cannot hold.
            guard let number = Double(text), number.isFinite else { throw SyntaxError(offset: start) }
            return number
        }

        func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

        mutating func string() throws(SyntaxError) -> String {
            index += 1
            let start = index
            // Fast path: no escapes.
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") {
                    let raw = UnsafeBufferPointer(rebasing: bytes[start..<index])
                    index += 1
                    guard let text = String(validating: raw, as: UTF8.self) else { throw SyntaxError(offset: start) }
                    return text
                }
                if byte == UInt8(ascii: "\\") { break }
                guard byte >= 0x20 else { throw error }
                index += 1
            }
            var scratch = Array(UnsafeBufferPointer(rebasing: bytes[start..<index]))
            while index < bytes.count {
                let byte = bytes[index]
                switch byte {
                case UInt8(ascii: "\""):
                    index += 1
                    guard let text = String(validating: scratch, as: UTF8.self) else { throw SyntaxError(offset: start) }
                    return text
                case UInt8(ascii: "\\"):
                    index += 1
                    guard index < bytes.count else { throw error }
                    let escape = bytes[index]
                    index += 1
                    switch escape {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scratch.append(escape)
                    case UInt8(ascii: "b"): scratch.append(0x08)
                    case UInt8(ascii: "f"): scratch.append(0x0C)
                    case UInt8(ascii: "n"): scratch.append(0x0A)
                    case UInt8(ascii: "r"): scratch.append(0x0D)
                    case UInt8(ascii: "t"): scratch.append(0x09)
                    case UInt8(ascii: "u"):
                        var scalar = try hex4()
                        if (0xD800...0xDBFF).contains(scalar) {
                            // A high surrogate must be followed by an escaped low one.
                            guard bytes.count - index >= 6, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
                            else { throw error }
                            index += 2
                            let low = try hex4()
                            guard (0xDC00...0xDFFF).contains(low) else { throw error }
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else if (0xDC00...0xDFFF).contains(scalar) {
                            throw error
                        }
                        guard let unicode = Unicode.Scalar(scalar) else { throw error }
                        scratch.append(contentsOf: UTF8.encode(unicode)!)
                    default:
                        throw error
                    }
                default:
                    guard byte >= 0x20 else { throw error }
                    scratch.append(byte)
                    index += 1
                }
            }
            throw error
        }

        mutating func hex4() throws(SyntaxError) -> UInt32 {
            guard bytes.count - index >= 4 else { throw error }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let byte = bytes[index]
                let digit: UInt32
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
                default: throw error
                }
                value = value << 4 | digit
                index += 1
            }
            return value
        }
    }
}
