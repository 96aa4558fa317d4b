/// A JSON value kept as its text. Task args and results are written to the wire and the store several times per task
/// but read by the server only for a few top-level options, so they are parsed once, when they arrive, and then
/// travel as these bytes: `value` and `members(named:)` parse on demand.
///
/// The text is always valid JSON with no whitespace outside strings (an SSE `data:` line may not break), nesting
/// within `JSONLimits.maxDepth`, and no repeated key at its top level (the server reads options there, and other
/// parsers keep the last of repeated keys where this one keeps the first; deeper down, whoever reads the args reads
/// them with one parser). Two texts are equal when their values are (`{"a":1,"b":2}` equals `{"b":2,"a":1}`).
public struct JSONText: Sendable, Hashable, CustomStringConvertible {
    public let text: String
    /// Top-level members the parser read while it validated the text; not part of the value (equality ignores it).
    let known: KnownMembers?

    /// The top-level members named in `names` that an object's text holds (the first of repeated ones): a task's
    /// options, read out of its args while a client message is parsed, so that neither the gateway nor the pool
    /// steps over kilobytes of rows again to find them.
    struct KnownMembers: Sendable {
        let names: Set<String>
        let values: [String: JSONValue]
    }

    /// Text the caller knows to be valid and compact: a slice the parser has just validated, or a store's column
    /// written from a `JSONText`.
    init(trusted text: String, known: KnownMembers? = nil) {
        self.text = text
        self.known = known
    }

    /// The value written compactly with sorted keys, as `WireJSON` writes everything.
    public init(_ value: JSONValue) {
        text = WireJSON.encode(value)
        known = nil
    }

    /// `text` if it is valid JSON: kept as it is when it is compact and has no repeated keys, else written out again
    /// (other parsers keep the last of repeated keys, this one the first: the server and a handler must agree).
    public init(validating text: String) throws(WireParser.SyntaxError) {
        let parsed = try WireParser.parseKeepingText(text.utf8)
        self = parsed.text ?? JSONText(parsed.value)
    }

    public static func object(_ members: [String: JSONValue]) -> JSONText { JSONText(.object(members)) }

    public static let null = JSONText(trusted: "null")
    public static let emptyObject = JSONText(trusted: "{}")

    public var isNull: Bool { text == "null" }

    /// The value, parsed now (the text is valid, so this does not fail).
    public var value: JSONValue { (try? WireParser.parse(text.utf8)) ?? .null }

    public var objectValue: [String: JSONValue]? { value.objectValue }

    /// The top-level members of an object named in `keys`, parsing only those: the pool reads `timeout_ms` and
    /// `max_attempts` out of kilobytes of args this way.
    public func members(named keys: Set<String>) -> [String: JSONValue] {
        if let known, keys.isSubset(of: known.names) {
            return keys == known.names ? known.values : known.values.filter { keys.contains($0.key) }
        }
        return WireParser.members(of: text.utf8, named: keys)
    }

    /// One top-level member of an object, parsed alone.
    public subscript(key: String) -> JSONValue? {
        members(named: [key])[key]
    }

    public var description: String { text }

    public static func == (lhs: JSONText, rhs: JSONText) -> Bool {
        lhs.text == rhs.text || lhs.value == rhs.value
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(value)
    }
}

extension JSONText: Codable {
    /// Decoded through `JSONValue` (stores and REST bodies; the wire's hot path keeps the text it was sent).
    public init(from decoder: any Decoder) throws {
        self.init(try JSONValue(from: decoder))
    }

    public func encode(to encoder: any Encoder) throws {
        try value.encode(to: encoder)
    }
}

extension JSONText: ExpressibleByDictionaryLiteral, ExpressibleByArrayLiteral, ExpressibleByStringLiteral,
    ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral
{
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self.init(.object(Dictionary(elements, uniquingKeysWith: { first, _ in first })))
    }
    public init(arrayLiteral elements: JSONValue...) { self.init(.array(elements)) }
    public init(stringLiteral value: String) { self.init(.string(value)) }
    public init(integerLiteral value: Int) { self.init(.number(Double(value))) }
    public init(booleanLiteral value: Bool) { self.init(.bool(value)) }
}
