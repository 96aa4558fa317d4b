import Foundation

/// The bodies of the REST admin API (`openapi.yaml`), one type each, which the server writes and the `taskgate` CLI
/// reads: the two cannot drift apart.
public enum AdminAPI {
    /// `POST /api/v1/tasks`.
    public struct SubmitRequest: Codable, Sendable {
        public var cmd: String
        public var args: [String: JSONValue]?
        public var uid: String?
        public var id: String?

        public init(cmd: String, args: [String: JSONValue]? = nil, uid: String? = nil, id: String? = nil) {
            self.cmd = cmd
            self.args = args
            self.uid = uid
            self.id = id
        }
    }

    /// `GET /api/v1/tasks`.
    public struct TaskList: Codable, Sendable {
        public var tasks: [TaskRecord]
        public init(tasks: [TaskRecord]) { self.tasks = tasks }
    }

    /// `GET /api/v1/clients`.
    public struct ClientList: Codable, Sendable {
        public var clients: [ClientInfo]
        public init(clients: [ClientInfo]) { self.clients = clients }
    }

    /// `GET /api/v1/nodes`.
    public struct NodeList: Codable, Sendable {
        public var nodes: [Gateway.NodeSummary]
        public init(nodes: [Gateway.NodeSummary]) { self.nodes = nodes }
    }

    /// `GET /api/v1/schedules`.
    public struct ScheduleList: Codable, Sendable {
        public var schedules: [ScheduleStatus]
        public init(schedules: [ScheduleStatus]) { self.schedules = schedules }
    }

    /// `GET /api/v1/handlers`.
    public struct HandlerList: Codable, Sendable {
        public struct Handler: Codable, Sendable {
            public var name: String
            public var description: String
            public var timeoutMs: Int64
            public init(name: String, description: String, timeoutMs: Int64) {
                self.name = name
                self.description = description
                self.timeoutMs = timeoutMs
            }
        }
        public var generation: Int
        public var handlers: [Handler]
        public init(generation: Int, handlers: [Handler]) {
            self.generation = generation
            self.handlers = handlers
        }
    }

    /// `POST /api/v1/reload`: the first node's answer at the top (what a single node always said), and every
    /// targeted node's in `nodes`.
    public struct ReloadSummary: Codable, Sendable {
        public var generation: Int
        public var handlers: [String]
        public var added: [String]
        public var changed: [String]
        public var removed: [String]
        public var nodes: [NodeReload]

        public init(_ answers: [NodeReload]) {
            let first = answers.firstReloaded
            generation = first?.generation ?? 0
            handlers = first?.handlers ?? []
            added = first?.added ?? []
            changed = first?.changed ?? []
            removed = first?.removed ?? []
            nodes = answers
        }
    }
}
