/// Every message the server sends. One struct with optional fields keeps the JSON flat, as Swoole-era clients expect
/// (`type`, `code`, `info` at the top level); absent fields are left out.
public struct ServerMessage: Sendable, Encodable, Equatable {
    public var type: String
    public var code: Int?
    public var info: String?
    public var error: String?
    public var ref: String?
    /// Only on events (`progress`, `done`): the event's number in its uid's log, the cursor to resume after.
    public var seq: UInt64?
    /// Only on `hello`: the uid's latest seq. Not named `seq`, so that a client saving a cursor from every `seq` it
    /// sees does not skip the events replayed after the hello.
    public var head: UInt64?
    public var task: TaskPayload?
    public var duplicate: Bool?
    public var uid: String?
    public var transport: String?
    public var admin: Bool?
    public var reset: Bool?
    public var handlers: [String]?
    public var clients: [ClientInfo]?
    public var generation: Int?
    public var added: [String]?
    public var changed: [String]?
    public var removed: [String]?
    /// Each node's answer to a reload (a cluster reloads every node, or the one named in `args.node`).
    public var nodes: [NodeReload]?

    public init(type: String, code: Int? = nil, info: String? = nil, ref: String? = nil) {
        self.type = type
        self.code = code
        self.info = info
        self.ref = ref
    }

    public static func error(_ error: GatewayError, ref: String?) -> ServerMessage {
        var message = ServerMessage(type: "error", code: error.code, info: error.info, ref: ref)
        message.error = error.kind.rawValue
        return message
    }

    /// The first message on a WebSocket or SSE connection: who it is, the latest seq (`head`), and whether the cursor
    /// it resumed from was out of range. It has no `code`: a Swoole-era page reads `code` 200 as "your task is done".
    public static func hello(uid: String, transport: Transport, head: UInt64, admin: Bool, reset: Bool) -> ServerMessage {
        var message = ServerMessage(type: "hello", code: nil, info: "connected")
        message.uid = uid
        message.transport = transport.rawValue
        message.head = head
        message.admin = admin
        message.reset = reset
        return message
    }

    public static func submitted(_ task: TaskRecord, duplicate: Bool, ref: String?) -> ServerMessage {
        var message = ServerMessage(type: "submitted", code: 202, info: duplicate ? "task already submitted" : "task submitted", ref: ref)
        message.task = .whole(task)
        message.duplicate = duplicate
        return message
    }

    /// Events say what changed: `progress` its status, progress and attempts, without args or result.
    public static func progress(_ task: TaskRecord, seq: UInt64) -> ServerMessage {
        var message = ServerMessage(type: "progress")
        message.seq = seq
        message.task = .change(TaskChange(progressOf: task))
        return message
    }

    /// `done`: the final status, result and error, without args.
    public static func done(_ task: TaskRecord, seq: UInt64) -> ServerMessage {
        var message = ServerMessage(type: "done", code: 200, info: "task finished")
        message.seq = seq
        message.task = .change(TaskChange(doneOf: task))
        return message
    }
}
