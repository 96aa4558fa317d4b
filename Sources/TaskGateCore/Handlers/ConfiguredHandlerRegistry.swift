import Logging
import Synchronization

/// Handlers from Swift code plus those declared in the config file. `reload` re-reads the file: a bad file is
/// refused and the current table stays; handlers whose settings did not change keep running as they are
/// (a worker pool keeps its processes), changed and removed ones are retired once the new table is in force.
public final class ConfiguredHandlerRegistry: HandlerRegistry {
    private struct State {
        var table: HandlerTable
        var configs: [String: HandlerConfig]
    }

    public let configPath: String?
    private let swiftHandlers: @Sendable () -> [any TaskHandler]
    private let logger: Logger
    private let state: Mutex<State>
    /// Reloads one at a time, so two reloads never build from the same old table.
    private let reloading = Mutex(false)

    public init(
        configPath: String?, swiftHandlers: @escaping @Sendable () -> [any TaskHandler] = BuiltinHandlers.all, logger: Logger
    ) throws(ConfigError) {
        self.configPath = configPath
        self.swiftHandlers = swiftHandlers
        self.logger = logger
        let config = try Self.loadConfig(configPath, swift: swiftHandlers())
        let configs = config.handlers
        let handlers = swiftHandlers() + configs.map { Self.makeHandler(name: $0.key, config: $0.value, logger: logger) }
        state = Mutex(
            State(table: HandlerTable(generation: 1, handlers: handlers, schedules: config.schedules), configs: configs))
    }

    public var current: HandlerTable { state.withLock { $0.table } }

    public func reload() async throws -> ReloadResult {
        let acquired = reloading.withLock { busy -> Bool in
            if busy { return false }
            busy = true
            return true
        }
        guard acquired else {
            throw ConfigError(file: configPath ?? "", location: "", problem: "a reload is already in progress")
        }
        defer { reloading.withLock { $0 = false } }

        let swift = swiftHandlers()
        let config = try Self.loadConfig(configPath, swift: swift)
        let configs = config.handlers
        let (result, retired) = state.withLock { state -> (ReloadResult, [any TaskHandler]) in
            var handlers = swift
            var added: [String] = []
            var changed: [String] = []
            var retired: [any TaskHandler] = []
            for (name, config) in configs {
                if let old = state.configs[name], old == config, let existing = state.table.handler(named: name) {
                    handlers.append(existing)  // unchanged: keep it, processes and all
                    continue
                }
                if state.configs[name] == nil { added.append(name) } else { changed.append(name) }
                if let existing = state.table.handler(named: name) { retired.append(existing) }
                handlers.append(Self.makeHandler(name: name, config: config, logger: logger))
            }
            let removed = state.configs.keys.filter { configs[$0] == nil }
            retired += removed.compactMap { state.table.handler(named: $0) }
            state.table = HandlerTable(generation: state.table.generation + 1, handlers: handlers, schedules: config.schedules)
            state.configs = configs
            return (ReloadResult(table: state.table, added: added, changed: changed, removed: removed), retired)
        }
        for handler in retired {
            await (handler as? any RetirableHandler)?.retire()
        }
        return result
    }

    public func shutdown() async {
        for handler in current.handlers.values {
            await (handler as? any RetirableHandler)?.retire()
        }
    }

    private static func reservedNames(_ swift: [any TaskHandler]) -> Set<String> {
        Session.serverCommands.union(swift.map(\.name))
    }

    private static func loadConfig(_ path: String?, swift: [any TaskHandler]) throws(ConfigError) -> GatewayConfig {
        guard let path else { return GatewayConfig() }
        let config = try ConfigLoader.load(path: path, reservedNames: reservedNames(swift))
        // Every schedule names a handler of the table it comes with (here, since the file alone does not know the
        // Swift handlers); a server command such as `ping` is not one.
        let handlerNames = Set(swift.map(\.name)).union(config.handlers.keys)
        for (index, schedule) in config.schedules.enumerated() where !handlerNames.contains(schedule.cmd) {
            throw ConfigError(file: path, location: "schedules[\(index)].cmd", problem: "no handler named '\(schedule.cmd)'")
        }
        return config
    }

    static func makeHandler(name: String, config: HandlerConfig, logger: Logger) -> any TaskHandler {
        switch config.kind {
        case .command: CommandHandler(name: name, config: config)
        case .worker: WorkerPoolHandler(name: name, config: config, logger: logger)
        }
    }
}
