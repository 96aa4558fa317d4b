import Synchronization

/// One immutable generation of handlers. Running tasks keep the table they started with, so a reload never
/// changes a task under its feet.
public struct HandlerTable: Sendable {
    public let generation: Int
    public let handlers: [String: any TaskHandler]
    /// The recurring schedules in force with these handlers (a reload replaces both together).
    public let schedules: [Schedule]

    /// The handlers with a rate limit, which a claim starts at most one of each (`ClaimRules.pacedCommands`).
    public let pacedCommands: [String]

    public init(generation: Int, handlers: [any TaskHandler], schedules: [Schedule] = []) {
        self.generation = generation
        self.handlers = Dictionary(handlers.map { ($0.name, $0) }, uniquingKeysWith: { _, last in last })
        self.schedules = schedules
        pacedCommands = self.handlers.values.filter { $0.rateLimit != nil }.map(\.name).sorted()
    }

    public var names: [String] { handlers.keys.sorted() }

    public func handler(named name: String) -> (any TaskHandler)? { handlers[name] }
}

/// Where the pool finds the handler for a command. Behind a protocol so that handlers can come from Swift code
/// or from a config file (external commands, worker processes).
public protocol HandlerRegistry: Sendable {
    var current: HandlerTable { get }
    /// Builds a new table; on failure the current one stays in force.
    func reload() async throws -> ReloadResult
    /// Lets go of what the handlers hold (worker processes), at shutdown.
    func shutdown() async
}

extension HandlerRegistry {
    public func shutdown() async {}
}

/// A reload's outcome: the new table and what changed, by handler name.
public struct ReloadResult: Sendable {
    public var table: HandlerTable
    public var added: [String]
    public var changed: [String]
    public var removed: [String]

    public init(table: HandlerTable, added: [String] = [], changed: [String] = [], removed: [String] = []) {
        self.table = table
        self.added = added.sorted()
        self.changed = changed.sorted()
        self.removed = removed.sorted()
    }
}

/// A registry whose handlers are Swift values, built anew by `makeHandlers` on every reload.
public final class SwiftHandlerRegistry: HandlerRegistry {
    private let makeHandlers: @Sendable () throws -> [any TaskHandler]
    private let table: Mutex<HandlerTable>

    public init(makeHandlers: @escaping @Sendable () throws -> [any TaskHandler]) throws {
        self.makeHandlers = makeHandlers
        self.table = Mutex(HandlerTable(generation: 1, handlers: try makeHandlers()))
    }

    /// The built-in handlers only.
    public convenience init() {
        // Building the built-ins cannot fail.
        try! self.init(makeHandlers: BuiltinHandlers.all)
    }

    public var current: HandlerTable { table.withLock { $0 } }

    public func reload() async throws -> ReloadResult {
        let handlers = try makeHandlers()
        return table.withLock { table in
            let old = Set(table.names)
            table = HandlerTable(generation: table.generation + 1, handlers: handlers)
            let new = Set(table.names)
            return ReloadResult(table: table, added: Array(new.subtracting(old)), removed: Array(old.subtracting(new)))
        }
    }
}
