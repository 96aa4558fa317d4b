import Synchronization

/// One immutable generation of handlers. Running tasks keep the table they started with, so a reload never
/// changes a task under its feet.
public struct HandlerTable: Sendable {
    public let generation: Int
    public let handlers: [String: any TaskHandler]

    public init(generation: Int, handlers: [any TaskHandler]) {
        self.generation = generation
        self.handlers = Dictionary(handlers.map { ($0.name, $0) }, uniquingKeysWith: { _, last in last })
    }

    public var names: [String] { handlers.keys.sorted() }

    public func handler(named name: String) -> (any TaskHandler)? { handlers[name] }
}

/// Where the pool finds the handler for a command. Behind a protocol so that configured handlers
/// (external commands, worker processes) can come from a config file later.
public protocol HandlerRegistry: Sendable {
    var current: HandlerTable { get }
    /// Builds a new table; on failure the current one stays in force.
    func reload() async throws -> HandlerTable
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

    public func reload() async throws -> HandlerTable {
        let handlers = try makeHandlers()
        return table.withLock { table in
            table = HandlerTable(generation: table.generation + 1, handlers: handlers)
            return table
        }
    }
}
