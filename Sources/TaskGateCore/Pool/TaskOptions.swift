/// Per-task settings: the handler's defaults, overridden by `args.timeout_ms` and `args.max_attempts`.
public struct TaskOptions: Sendable, Equatable {
    public var timeout: Duration
    public var maxAttempts: Int

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
