import Foundation

/// Per-task settings: the handler's defaults, overridden by `args.timeout_ms` and `args.max_attempts`.
public struct TaskOptions: Sendable, Equatable {
    public var timeout: Duration
    public var maxAttempts: Int
    /// The args these options are read from: a stored task's args are scanned for only these.
    public static let argumentNames = ReservedArguments.options

    public init(args: [String: JSONValue], handler: any TaskHandler) throws(GatewayError) {
        timeout = handler.defaultTimeout
        maxAttempts = max(1, handler.maxAttempts)
        if let value = args["timeout_ms"], value != .null {
            guard let ms = value.intValue, ms > 0, ms <= 86_400_000 else {
                throw .badRequest("'args.timeout_ms' must be a whole number from 1 to 86400000")
            }
            timeout = .milliseconds(ms)
        }
        if let value = args["max_attempts"], value != .null {
            guard let attempts = value.intValue, (1...10).contains(attempts) else {
                throw .badRequest("'args.max_attempts' must be a whole number from 1 to 10")
            }
            maxAttempts = attempts
        }
    }

    /// Wait before attempt `attempt + 1`: 0.5 s, 1 s, 2 s, … at most 30 s.
    public static func backoff(afterAttempt attempt: Int) -> Duration {
        .milliseconds(min(30_000, 500 << min(max(attempt - 1, 0), 10)))
    }
}

/// When and in what order a task runs: the handler's default priority, overridden by `args.priority`, and
/// `args.delay_ms` or `args.run_at`.
public struct TaskScheduling: Sendable, Equatable {
    public static let priorities = TaskRecord.priorities
    /// How far ahead a task may be scheduled: longer waits belong in a recurring schedule or the caller's own store.
    public static let maxDelayMilliseconds = 30 * 86_400_000

    public var priority: Int
    /// `nil`: due at once.
    public var runAt: Date?
    /// The args these are read from.
    public static let argumentNames = ReservedArguments.scheduling

    /// `mayRaisePriority`: whether the submitter may ask for a more urgent priority than the handler's default
    /// (the admin may; an end user may only lower theirs, else fair share could be bypassed by asking for 0).
    public init(
        args: [String: JSONValue], handler: any TaskHandler, now: Date = Date(), mayRaisePriority: Bool = true
    ) throws(GatewayError) {
        priority = handler.defaultPriority
        if let value = args["priority"], value != .null {
            guard let asked = value.intValue, Self.priorities.contains(asked) else {
                throw .badRequest("'args.priority' must be a whole number from 0 (runs first) to 9")
            }
            if asked < priority && !mayRaisePriority {
                throw GatewayError(
                    .forbidden,
                    "'args.priority' \(asked) is more urgent than the handler's default (\(priority)); raising it needs the admin API")
            }
            priority = asked
        }
        // `null` is the same as absent (as for every option). Spelled out: JSONValue is nil-literal expressible, so a
        // `nil` in a closure here would mean `.null`.
        let delay = Self.given(args["delay_ms"])
        let time = Self.given(args["run_at"])
        switch (delay, time) {
        case (nil, nil):
            runAt = nil
        case (.some, .some):
            throw .badRequest("give 'args.delay_ms' or 'args.run_at', not both")
        case (let delay?, nil):
            guard let ms = delay.intValue, (0...Self.maxDelayMilliseconds).contains(ms) else {
                throw .badRequest("'args.delay_ms' must be a whole number from 0 to \(Self.maxDelayMilliseconds) (30 days)")
            }
            runAt = ms == 0 ? nil : now.addingTimeInterval(Double(ms) / 1000)
        case (nil, let time?):
            guard case .string(let text) = time, let date = RFC3339.parse(text) else {
                throw .badRequest("'args.run_at' must be an RFC 3339 time with a zone, e.g. 2026-12-02T10:00:00Z")
            }
            guard date.timeIntervalSince(now) <= Double(Self.maxDelayMilliseconds) / 1000 else {
                throw .badRequest("'args.run_at' is more than 30 days ahead")
            }
            // A time already past runs at once.
            runAt = date > now ? date : nil
        }
    }
}

extension TaskScheduling {
    static func given(_ value: JSONValue?) -> JSONValue? {
        switch value {
        case nil, .null?: return Optional<JSONValue>.none
        case let value?: return value
        }
    }
}

/// RFC 3339 timestamps (`2026-12-02T10:00:00Z`, `2026-12-02T11:00:00.250+01:00`), as clients write them.
public enum RFC3339 {
    public static func parse(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        var index = 0
        func number(_ width: Int) -> Int? {
            guard index + width <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[index..<index + width] {
                guard (0x30...0x39).contains(byte) else { return nil }
                value = value * 10 + Int(byte - 0x30)
            }
            index += width
            return value
        }
        func expect(_ characters: String) -> Bool {
            guard index < bytes.count, characters.utf8.contains(bytes[index]) else { return false }
            index += 1
            return true
        }
        guard let year = number(4), expect("-"), let month = number(2), expect("-"), let day = number(2), expect("Tt "),
            let hour = number(2), expect(":"), let minute = number(2), expect(":"), let second = number(2),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        var fraction = 0.0
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            var scale = 0.1
            let start = index
            while index < bytes.count, (0x30...0x39).contains(bytes[index]) {
                fraction += Double(bytes[index] - 0x30) * scale
                scale /= 10
                index += 1
            }
            guard index > start else { return nil }
        }
        var offset = 0
        if expect("Zz") {
            offset = 0
        } else if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
            let sign = bytes[index] == UInt8(ascii: "-") ? -1 : 1
            index += 1
            guard let hours = number(2), expect(":"), let minutes = number(2), hours < 24, minutes < 60 else { return nil }
            offset = sign * (hours * 3600 + minutes * 60)
        } else {
            return nil
        }
        guard index == bytes.count else { return nil }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(min(second, 59))
        let seconds = timegm(&parts)
        // timegm normalises 31 February into March: refuse what does not round-trip.
        guard parts.tm_mday == Int32(day), parts.tm_mon == Int32(month - 1) else { return nil }
        return Date(timeIntervalSince1970: Double(seconds - offset) + fraction)
    }
}
