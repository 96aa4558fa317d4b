import Synchronization

/// A task handler: the code that runs when a client sends `{"cmd": name}`.
///
/// To add one in your own package, conform to this protocol and pass it to `HandlerTable` (see README).
/// `run` executes on the task workers' threads, never on the server's event loops, so CPU-bound work is fine;
/// check `Task.isCancelled` (or call `try Task.checkCancellation()`) now and then so cancel and timeouts work.
public protocol TaskHandler: Sendable {
    var name: String { get }
    var summary: String { get }
    /// Used when the client gives no `args.timeout_ms`.
    var defaultTimeout: Duration { get }
    /// How many times a task may be started in all (a failure or a crash with attempts left runs it again after a
    /// backoff). Clients may lower or raise it per task with `args.max_attempts` (1–10).
    var maxAttempts: Int { get }
    /// Safe to run again after a crash interrupted it. A non-idempotent task interrupted mid-run is failed with
    /// `interrupted` instead of being retried.
    var isIdempotent: Bool { get }
    /// The priority of its tasks when the submitter gives none (0 runs first, 9 last).
    var defaultPriority: Int { get }
    /// At most this many of its tasks start per unit of time on this node; `nil`: no limit.
    var rateLimit: RateLimit? { get }
    /// Rejects bad arguments up front, so that the client gets a `400` instead of a task that fails later.
    func validate(_ args: [String: JSONValue]) throws(GatewayError)
    /// `false`: `validate` is never called, so the server never parses a task's args beyond the options it reads
    /// itself (`id`, `timeout_ms`, …): for handlers that keep the default `validate` and take large args (echo,
    /// external processes, which check their own). Default `true`.
    var validatesArgs: Bool { get }
    func run(_ context: TaskContext) async throws -> JSONValue
    /// A handler whose work is a few microseconds of synchronous code (echo) gives its result here, and the pool
    /// takes it in its own turn: no hop to a worker thread and back, no timeout timer (nothing in it can wait or
    /// hang). `nil`, the default: the task runs `run` on the task workers. A text, so that a result made of the args
    /// (`context.argsText`) is not written out again.
    func resultInline(_ context: TaskContext) throws -> JSONText?
}

extension TaskHandler {
    public var defaultTimeout: Duration { .seconds(300) }
    public var maxAttempts: Int { 1 }
    public var isIdempotent: Bool { false }
    public var defaultPriority: Int { 0 }
    public var rateLimit: RateLimit? { nil }
    public func validate(_ args: [String: JSONValue]) throws(GatewayError) {}
    public var validatesArgs: Bool { true }
    public func resultInline(_ context: TaskContext) throws -> JSONText? { nil }
}

/// What a running handler sees of its task.
public struct TaskContext: Sendable {
    public let taskID: String
    public let uid: String?
    /// The args as the client wrote them, for handlers that pass them on (an external process, a result).
    public let argsText: JSONText
    /// The args, parsed the first time a handler asks (most never do, or read only a few keys).
    public var args: [String: JSONValue] { parsedArgs.value }
    private let parsedArgs: ParsedOnce
    /// 1 on the first run, 2 on the first retry, …
    public let attempt: Int
    /// The W3C `traceparent` of this run's `task.run` span when tracing is on (`nil` otherwise), for handlers that
    /// pass the trace on (external handlers get it as `TRACEPARENT` or a `traceparent` field).
    public let traceparent: String?
    let progressSink: @Sendable (Double) async -> Void

    public init(
        taskID: String, uid: String?, argsText: JSONText, attempt: Int = 1, traceparent: String? = nil,
        progressSink: @escaping @Sendable (Double) async -> Void
    ) {
        self.taskID = taskID
        self.uid = uid
        self.argsText = argsText
        self.parsedArgs = ParsedOnce(argsText)
        self.attempt = attempt
        self.traceparent = traceparent
        self.progressSink = progressSink
    }

    public init(
        taskID: String, uid: String?, args: [String: JSONValue], attempt: Int = 1, traceparent: String? = nil,
        progressSink: @escaping @Sendable (Double) async -> Void
    ) {
        self.init(
            taskID: taskID, uid: uid, argsText: .object(args), attempt: attempt, traceparent: traceparent,
            progressSink: progressSink)
    }

    /// Reports progress between 0 and 1; the owner's connections get a `progress` event.
    public func reportProgress(_ fraction: Double) async {
        await progressSink(min(1, max(0, fraction)))
    }
}

/// A task's args parsed on first use and kept. Behind a lock: copies of a context share it, and a handler may read
/// `args` from child tasks of its own at once.
private final class ParsedOnce: Sendable {
    private let text: JSONText
    private let parsed = Mutex<[String: JSONValue]?>(nil)

    init(_ text: JSONText) {
        self.text = text
    }

    var value: [String: JSONValue] {
        parsed.withLock { cached in
            if let cached { return cached }
            let value = text.objectValue ?? [:]
            cached = value
            return value
        }
    }
}

/// Thrown by a handler to fail its task with a message the client sees.
public struct TaskFailure: Error, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
}

/// A handler declared in the config file: its timeout, attempts, priority and rate are the file's.
public protocol ConfiguredTaskHandler: TaskHandler {
    var config: HandlerConfig { get }
}

extension ConfiguredTaskHandler {
    /// The process checks its own args.
    public var validatesArgs: Bool { false }
    public var defaultTimeout: Duration { .milliseconds(config.timeoutMs) }
    public var maxAttempts: Int { config.maxAttempts }
    public var isIdempotent: Bool { config.idempotent }
    public var defaultPriority: Int { config.priority }
    public var rateLimit: RateLimit? { config.rate }
}
