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
    /// Rejects bad arguments up front, so that the client gets a `400` instead of a task that fails later.
    func validate(_ args: [String: JSONValue]) throws(GatewayError)
    func run(_ context: TaskContext) async throws -> JSONValue
}

extension TaskHandler {
    public var defaultTimeout: Duration { .seconds(300) }
    public func validate(_ args: [String: JSONValue]) throws(GatewayError) {}
}

/// What a running handler sees of its task.
public struct TaskContext: Sendable {
    public let taskID: String
    public let uid: String?
    public let args: [String: JSONValue]
    let progressSink: @Sendable (Double) async -> Void

    public init(taskID: String, uid: String?, args: [String: JSONValue], progressSink: @escaping @Sendable (Double) async -> Void) {
        self.taskID = taskID
        self.uid = uid
        self.args = args
        self.progressSink = progressSink
    }

    /// Reports progress between 0 and 1; the owner's connections get a `progress` event.
    public func reportProgress(_ fraction: Double) async {
        await progressSink(min(1, max(0, fraction)))
    }
}

/// Thrown by a handler to fail its task with a message the client sees.
public struct TaskFailure: Error, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
}
