import Foundation

/// The one JSON configuration used for everything on the wire, so dates and keys look the same everywhere.
public enum WireJSON {
    public static func makeEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(formatTimestamp(date))
        }
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    public static func makeDecoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = parseTimestamp(text) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "not an ISO 8601 timestamp: \(text)")
            }
            return date
        }
        return decoder
    }

    /// Shared: encoders and decoders are safe to use from many threads, and making one per message is costly.
    public static let encoder = makeEncoder()
    public static let decoder = makeDecoder()

    /// Types without a hand-written writer (`WireWriter` covers the hot ones). Values nest no deeper than
    /// `JSONLimits.maxDepth` allows, far inside JSONEncoder's own limit, but a failure is still the caller's to
    /// answer (a 500), never a trap.
    public static func encode(_ value: some Encodable) throws -> String {
        String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    /// `2026-11-25T20:00:00.123Z`, rounded to the millisecond, so that a timestamp read back from the store prints
    /// exactly as it did when it was written.
    public static func formatTimestamp(_ date: Date) -> String {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded())
        var seconds = time_t(milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000)
        let fraction = Int(milliseconds - Int64(seconds) * 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        // Written digit by digit: `String(format:)` goes through Foundation's varargs formatting, a measurable part
        // of every event's cost (each carries two or three timestamps).
        var text = [UInt8](repeating: 0, count: 24)
        func put(_ value: Int, at offset: Int, width: Int) {
            var value = value
            for index in stride(from: offset + width - 1, through: offset, by: -1) {
                text[index] = UInt8(ascii: "0") + UInt8(value % 10)
                value /= 10
            }
        }
        put(Int(parts.tm_year) + 1900, at: 0, width: 4)
        put(Int(parts.tm_mon) + 1, at: 5, width: 2)
        put(Int(parts.tm_mday), at: 8, width: 2)
        put(Int(parts.tm_hour), at: 11, width: 2)
        put(Int(parts.tm_min), at: 14, width: 2)
        put(Int(parts.tm_sec), at: 17, width: 2)
        put(fraction, at: 20, width: 3)
        for (offset, separator) in [(4, "-"), (7, "-"), (10, "T"), (13, ":"), (16, ":"), (19, "."), (23, "Z")] as [(Int, Unicode.Scalar)] {
            text[offset] = UInt8(ascii: separator)
        }
        return String(decoding: text, as: UTF8.self)
    }

    public static func parseTimestamp(_ text: String) -> Date? {
        try? Date(text, strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }
}

extension KeyedEncodingContainer {
    /// Encodes every pair in order, an optional that is `nil` as `null`: the wire writes absent values out rather
    /// than leaving their keys away, so every field is always there for a client to read.
    public mutating func encode(all pairs: KeyValuePairs<Key, any Encodable>) throws {
        for (key, value) in pairs { try encode(value, forKey: key) }
    }
}
