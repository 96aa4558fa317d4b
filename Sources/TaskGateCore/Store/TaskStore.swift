/// Where task records live. The pool writes every state change here before anyone is told about it.
public protocol TaskStore: Sendable {
    /// Inserts a new task, or returns the task that already has this id.
    func insert(_ task: TaskRecord) async throws -> InsertOutcome
    func update(_ task: TaskRecord) async throws
    func task(id: String) async throws -> TaskRecord?
    /// Newest first.
    func list(_ query: TaskQuery) async throws -> [TaskRecord]
}

public enum InsertOutcome: Sendable, Equatable {
    case inserted
    case existing(TaskRecord)
}

public struct TaskQuery: Sendable, Equatable {
    public var uid: String?
    public var status: TaskStatus?
    public var limit: Int

    public init(uid: String? = nil, status: TaskStatus? = nil, limit: Int = 100) {
        self.uid = uid
        self.status = status
        self.limit = limit
    }
}
