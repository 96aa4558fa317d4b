/// The handlers every TaskGate has: small, real tasks for demos, tests and benchmarks.
public enum BuiltinHandlers {
    public static func all() -> [any TaskHandler] {
        [EchoHandler(), SleepHandler(), PrimesHandler(), FailHandler()]
    }
}

public struct EchoHandler: TaskHandler {
    public init() {}
    public var name: String { "echo" }
    public var summary: String { "Returns its arguments as the result." }
    public var isIdempotent: Bool { true }
    public var maxAttempts: Int { 3 }
    public var validatesArgs: Bool { false }
    public func run(_ context: TaskContext) async throws -> JSONValue {
        .object(context.args)
    }

    /// The args' own text: an echo costs no parse and no encode.
    public func resultInline(_ context: TaskContext) throws -> JSONText? {
        context.argsText
    }
}

public struct SleepHandler: TaskHandler {
    public static let maxMilliseconds = 600_000
    public init() {}
    public var name: String { "sleep" }
    public var summary: String { "Waits args.ms milliseconds, reporting progress every 10%." }
    public var defaultTimeout: Duration { .milliseconds(Self.maxMilliseconds + 60_000) }
    public var isIdempotent: Bool { true }
    public var maxAttempts: Int { 3 }

    public func validate(_ args: [String: JSONValue]) throws(GatewayError) {
        _ = try milliseconds(args)
    }

    func milliseconds(_ args: [String: JSONValue]) throws(GatewayError) -> Int {
        try args.wholeNumber("ms", default: 1000, in: 0...Self.maxMilliseconds)
    }

    public func run(_ context: TaskContext) async throws -> JSONValue {
        let ms = try milliseconds(context.args)
        for step in 1...10 {
            try await Task.sleep(for: .milliseconds(ms) / 10)
            await context.reportProgress(Double(step) / 10)
        }
        return ["slept_ms": .number(Double(ms))]
    }
}

public struct PrimesHandler: TaskHandler {
    public static let maxLimit = 100_000_000
    public init() {}
    public var name: String { "primes" }
    public var summary: String { "Counts the primes up to args.limit (CPU-bound), reporting progress." }
    public var isIdempotent: Bool { true }
    public var maxAttempts: Int { 3 }

    public func validate(_ args: [String: JSONValue]) throws(GatewayError) {
        _ = try limit(args)
    }

    func limit(_ args: [String: JSONValue]) throws(GatewayError) -> Int {
        try args.wholeNumber("limit", default: 100_000, in: 0...Self.maxLimit)
    }

    public func run(_ context: TaskContext) async throws -> JSONValue {
        let limit = try limit(context.args)
        let count = try await Self.countPrimes(upTo: limit) { fraction in await context.reportProgress(fraction) }
        return ["limit": .number(Double(limit)), "count": .number(Double(count))]
    }

    /// A segmented sieve: memory stays small for large limits, and each segment is a point to report progress and
    /// notice cancellation.
    static func countPrimes(upTo limit: Int, progress: (Double) async -> Void) async throws -> Int {
        guard limit >= 2 else { return 0 }
        let root = Int(Double(limit).squareRoot()) + 1
        var isComposite = [Bool](repeating: false, count: root + 1)
        var basePrimes: [Int] = []
        for candidate in 2...root where !isComposite[candidate] {
            basePrimes.append(candidate)
            var multiple = candidate * candidate
            while multiple <= root {
                isComposite[multiple] = true
                multiple += candidate
            }
        }
        let segmentSize = 1 << 16
        var segment = [Bool](repeating: false, count: segmentSize)
        var count = 0
        var low = 2
        var reportedTenths = 0
        while low <= limit {
            try Task.checkCancellation()
            let high = min(low + segmentSize - 1, limit)
            for index in 0...(high - low) { segment[index] = false }
            for prime in basePrimes {
                if prime * prime > high { break }
                var start = max(prime * prime, ((low + prime - 1) / prime) * prime)
                while start <= high {
                    segment[start - low] = true
                    start += prime
                }
            }
            for index in 0...(high - low) where !segment[index] { count += 1 }
            low = high + 1
            let tenths = Int(Double(min(low, limit)) / Double(limit) * 10)
            if tenths > reportedTenths {
                reportedTenths = tenths
                await progress(Double(tenths) / 10)
            }
        }
        return count
    }
}

public struct FailHandler: TaskHandler {
    public init() {}
    public var name: String { "fail" }
    public var summary: String {
        "Fails with args.message; with args.succeed_on_attempt N (and args.max_attempts) it shows retries."
    }
    public var isIdempotent: Bool { true }

    public func validate(_ args: [String: JSONValue]) throws(GatewayError) {
        if let value = args["succeed_on_attempt"], value.intValue == nil || value.intValue! < 1 {
            throw .badRequest("'args.succeed_on_attempt' must be a whole number of at least 1")
        }
    }

    public func run(_ context: TaskContext) async throws -> JSONValue {
        if let succeedOn = context.args["succeed_on_attempt"]?.intValue, context.attempt >= succeedOn {
            return ["attempt": .number(Double(context.attempt))]
        }
        throw TaskFailure(context.args["message"]?.stringValue ?? "failed on purpose")
    }
}

extension [String: JSONValue] {
    /// The whole number `args[key]` within `range`, or `defaultValue` when it is absent; anything else is a 400.
    func wholeNumber(_ key: String, default defaultValue: Int, in range: ClosedRange<Int>) throws(GatewayError) -> Int {
        guard let value = self[key] else { return defaultValue }
        guard let number = value.intValue, range.contains(number) else {
            throw .badRequest("'args.\(key)' must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }
}
