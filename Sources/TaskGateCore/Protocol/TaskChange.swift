/// What an event says about its task: what changed, not the whole record. The record can carry kilobytes of args
/// and a result, and an event used to repeat all of it (a 16 KB-args task sent 4 × 16 KB); a client has the whole
/// task from `submitted`, from `status`, or from REST.
public enum TaskChange: Sendable, Equatable, Encodable {
    /// A `progress` event: the task started (again) or reported how far it got.
    case progress(id: String, status: TaskStatus, progress: Double, attempts: Int)
    /// A `done` event: the final status with the result or the error (each written as `null` when absent).
    case done(id: String, status: TaskStatus, result: JSONText?, error: String?)

    public init(progressOf task: TaskRecord) {
        self = .progress(id: task.id, status: task.status, progress: task.progress, attempts: task.attempts)
    }

    public init(doneOf task: TaskRecord) {
        self = .done(id: task.id, status: task.status, result: task.result, error: task.error)
    }

    public var id: String {
        switch self {
        case .progress(let id, _, _, _), .done(let id, _, _, _): id
        }
    }

    enum CodingKeys: String, CodingKey {
        case id, status, progress, attempts, result, error
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .progress(let id, let status, let progress, let attempts):
            try container.encode(all: [.id: id, .status: status, .progress: progress, .attempts: attempts])
        case .done(let id, let status, let result, let error):
            try container.encode(all: [.id: id, .status: status, .result: result ?? JSONText.null, .error: error])
        }
    }
}

/// The task a message is about: the whole record (`submitted`, `status`, `cancel`) or, on an event, what changed.
public enum TaskPayload: Sendable, Equatable, Encodable {
    case whole(TaskRecord)
    case change(TaskChange)

    public var id: String {
        switch self {
        case .whole(let task): task.id
        case .change(let change): change.id
        }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .whole(let task): try task.encode(to: encoder)
        case .change(let change): try change.encode(to: encoder)
        }
    }
}
