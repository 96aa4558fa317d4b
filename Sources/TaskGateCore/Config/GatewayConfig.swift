import Foundation

/// The config file (`taskgate.json`, JSON with comments): server options and the handlers users plug in.
/// Keys are snake_case, as in the Swoole server's PHP config.
public struct GatewayConfig: Sendable, Equatable, Decodable {
    public var server: ServerSettings
    public var handlers: [String: HandlerConfig]
    /// Recurring tasks (cron), run once per tick across a cluster.
    public var schedules: [Schedule]

    public init(server: ServerSettings = .init(), handlers: [String: HandlerConfig] = [:], schedules: [Schedule] = []) {
        self.server = server
        self.handlers = handlers
        self.schedules = schedules
    }

    enum CodingKeys: String, CodingKey { case server, handlers, schedules }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try decoder.rejectUnknownKeys(allowed: ["server", "handlers", "schedules"])
        server = try container.decodeIfPresent(ServerSettings.self, forKey: .server) ?? .init()
        handlers = try container.decodeIfPresent([String: HandlerConfig].self, forKey: .handlers) ?? [:]
        schedules = try container.decodeIfPresent([Schedule].self, forKey: .schedules) ?? []
    }

    /// Server options by their settings' names in snake_case (`"task_workers"`), each as text or a list of texts.
    /// The server's settings table says which exist and what each takes; flags and environment variables win over
    /// them.
    public struct ServerSettings: Sendable, Equatable, Decodable {
        public var options: [String: [String]]

        public init(options: [String: [String]] = [:]) {
            self.options = options
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: AnyKey.self)
            var options: [String: [String]] = [:]
            for key in container.allKeys {
                let path = container.codingPath + [key]
                switch try container.decode(JSONValue.self, forKey: key) {
                case .null: continue
                case .array(let items):
                    options[key.stringValue] = try items.map { item in
                        guard let text = Self.text(item) else { throw ConfigError.invalid(path: path, "must be a list of strings or numbers") }
                        return text
                    }
                case let value:
                    guard let text = Self.text(value) else {
                        throw ConfigError.invalid(path: path, "must be a string, a number, true or false, or a list")
                    }
                    options[key.stringValue] = [text]
                }
            }
            // Their values are the settings table's to check (`ServerSettings.read` names a bad one by its place here).
            self.options = options
        }

        private static func text(_ value: JSONValue) -> String? {
            switch value {
            case .string(let text): text
            case .bool(let flag): flag ? "true" : "false"
            case .number(let number): number.rounded() == number && abs(number) < 1e15 ? String(Int64(number)) : String(number)
            default: nil
            }
        }
    }
}

/// One configured handler: an external command started per task, or a pool of long-lived worker processes.
public struct HandlerConfig: Sendable, Equatable, Decodable {
    public enum Kind: String, Sendable, Decodable {
        /// A command started per task: the task as JSON on stdin, JSON lines on stdout.
        case command
        /// Long-lived processes speaking newline-delimited JSON, many tasks each (Swoole's task workers).
        case worker
    }

    public var kind: Kind
    /// The executable and its arguments, e.g. `["python3", "examples/handlers/report.py"]`.
    public var command: [String]
    public var description: String?
    /// Working directory for the processes; relative paths are resolved from the config file's folder.
    public var workingDirectory: String?
    public var environment: [String: String]
    public var timeoutMs: Int
    public var concurrency: Int
    public var maxAttempts: Int
    public var idempotent: Bool
    /// Worker pools: how many processes.
    public var processes: Int
    /// Worker pools: a process is replaced after this many tasks (0: never), like Swoole's `task_max_request`.
    public var maxRequests: Int
    /// The priority of its tasks when the submitter gives none: 0 (runs first) to 9.
    public var priority: Int
    /// At most this many starts per second, minute or hour on each node (`"50/s"`); `nil`: no limit.
    public var rate: RateLimit?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case kind = "type"
        case command, description
        case workingDirectory = "cwd"
        case environment = "env"
        case timeoutMs = "timeout_ms"
        case concurrency
        case maxAttempts = "max_attempts"
        case idempotent, processes
        case maxRequests = "max_requests"
        case priority, rate
    }

    public init(
        kind: Kind, command: [String], description: String? = nil, workingDirectory: String? = nil,
        environment: [String: String] = [:], timeoutMs: Int = 60_000, concurrency: Int = 4, maxAttempts: Int = 1,
        idempotent: Bool = false, processes: Int = 2, maxRequests: Int = 0, priority: Int = 0, rate: RateLimit? = nil
    ) {
        self.kind = kind
        self.command = command
        self.description = description
        self.workingDirectory = workingDirectory
        self.environment = environment
        self.timeoutMs = timeoutMs
        self.concurrency = concurrency
        self.maxAttempts = maxAttempts
        self.idempotent = idempotent
        self.processes = processes
        self.maxRequests = maxRequests
        self.priority = priority
        self.rate = rate
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try decoder.rejectUnknownKeys(allowed: CodingKeys.allCases.map(\.rawValue))
        let path = container.codingPath
        kind = try container.decode(Kind.self, forKey: .kind)
        command = try container.decode([String].self, forKey: .command)
        guard let executable = command.first, !executable.isEmpty else {
            throw ConfigError.invalid(path: path + [CodingKeys.command], "must name an executable, e.g. [\"python3\", \"task.py\"]")
        }
        description = try container.decodeIfPresent(String.self, forKey: .description)
        workingDirectory = try container.decodeIfPresent(String.self, forKey: .workingDirectory)
        environment = try container.decodeIfPresent([String: String].self, forKey: .environment) ?? [:]
        timeoutMs = try container.decodeIfPresent(Int.self, forKey: .timeoutMs) ?? 60_000
        concurrency = try container.decodeIfPresent(Int.self, forKey: .concurrency) ?? 4
        maxAttempts = try container.decodeIfPresent(Int.self, forKey: .maxAttempts) ?? 1
        idempotent = try container.decodeIfPresent(Bool.self, forKey: .idempotent) ?? false
        processes = try container.decodeIfPresent(Int.self, forKey: .processes) ?? 2
        maxRequests = try container.decodeIfPresent(Int.self, forKey: .maxRequests) ?? 0
        priority = try container.decodeIfPresent(Int.self, forKey: .priority) ?? 0
        if let text = try container.decodeIfPresent(String.self, forKey: .rate) {
            guard let rate = RateLimit(text) else {
                throw ConfigError.invalid(
                    path: path + [CodingKeys.rate], "must be a count from 1 to 100000 per s, m or h, e.g. \"50/s\"")
            }
            self.rate = rate
        } else {
            rate = nil
        }
        func check(_ ok: Bool, _ key: CodingKeys, _ problem: String) throws {
            if !ok { throw ConfigError.invalid(path: path + [key], problem) }
        }
        try check((1...86_400_000).contains(timeoutMs), .timeoutMs, "must be from 1 to 86400000")
        try check((1...1000).contains(concurrency), .concurrency, "must be from 1 to 1000")
        try check((1...10).contains(maxAttempts), .maxAttempts, "must be from 1 to 10")
        try check((1...64).contains(processes), .processes, "must be from 1 to 64")
        try check(TaskRecord.priorities.contains(priority), .priority, "must be from 0 (runs first) to 9")
        try check(maxRequests >= 0, .maxRequests, "must not be negative (0: never recycle)")
        if kind == .command {
            try check(!container.contains(.processes) && !container.contains(.maxRequests), .processes,
                      "'processes' and 'max_requests' are for \"type\": \"worker\" handlers")
        }
    }
}

/// What is wrong with a config file, said so that a person can fix it: the file, where, and the problem.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var location: String
    public var problem: String

    public var description: String { "\(file): \(location.isEmpty ? "" : location + ": ")\(problem)" }

    /// Raised while decoding; the loader fills in the file.
    static func invalid(path: [any CodingKey], _ problem: String) -> ConfigError {
        ConfigError(file: "", location: keyPath(path), problem: problem)
    }

    static func keyPath(_ path: [any CodingKey]) -> String {
        path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
    }
}

extension Decoder {
    /// Typos in a config file (`"proceses": 4`) are errors, not silently ignored settings.
    func rejectUnknownKeys(allowed: [String]) throws {
        let container = try self.container(keyedBy: AnyKey.self)
        for key in container.allKeys where !allowed.contains(key.stringValue) {
            throw ConfigError.invalid(
                path: codingPath + [AnyKey(stringValue: key.stringValue)],
                "unknown key (expected one of: \(allowed.joined(separator: ", ")))")
        }
    }
}

struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}
