import Configuration
import Logging
import TaskGateCore

/// One setting of the server. Its key names it everywhere: `taskWorkers` is `--task-workers` on the command line,
/// `$TASKGATE_TASK_WORKERS` in the environment and `"task_workers"` in the config file's `server` section. The help
/// text and the README's table are made from these, with the defaults `ServerSettings()` has.
public struct Setting: Sendable {
    public enum Kind: Sendable, Equatable {
        /// `--key VALUE`.
        case value(placeholder: String)
        /// `--key` alone (on); `true`/`false` or `on`/`off` from the environment.
        case flag
        /// `--key VALUE`, repeatable; comma-separated in the environment.
        case list(placeholder: String)
    }

    public let key: String
    public let kind: Kind
    public let help: String
    /// The default as shown; `nil`: none.
    public let defaultText: String?
    /// A list's flag names one item (`--ws-path`), its variable all of them (`$TASKGATE_WS_PATHS`).
    let singularFlag: String?
    let isSecret: Bool
    let apply: @Sendable (inout ServerSettings, [String]) throws(SettingError) -> Void

    public var flag: String { singularFlag.map { "--" + $0 } ?? Self.flagName(key) }
    public var environmentVariable: String { Self.variableName(key) }
    public var fileKey: String { Self.words(key).joined(separator: "_") }

    /// `taskWorkers` → `--task-workers`, `TASKGATE_TASK_WORKERS`: the names the table and its error messages use.
    static func flagName(_ key: String) -> String { "--" + words(key).joined(separator: "-") }
    static func variableName(_ key: String) -> String { "TASKGATE_" + words(key).joined(separator: "_").uppercased() }

    /// `maxConnectionsPerUid` → max, connections, per, uid.
    static func words(_ key: String) -> [String] {
        var words: [String] = []
        var current = ""
        for character in key {
            if character.isUppercase, !current.isEmpty {
                words.append(current)
                current = ""
            }
            current.append(character.lowercased())
        }
        if !current.isEmpty { words.append(current) }
        return words
    }
}

/// A setting with a value it cannot take: the message names the flag and the variable.
public struct SettingError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension Setting {
    fileprivate static func text(
        _ key: String, _ help: String, default defaultValue: String?, placeholder: String = "text", secret: Bool = false,
        _ set: @escaping @Sendable (inout ServerSettings, String) throws(SettingError) -> Void
    ) -> Setting {
        Setting(
            key: key, kind: .value(placeholder: placeholder), help: help, defaultText: defaultValue, singularFlag: nil,
            isSecret: secret
        ) { settings, values throws(SettingError) in try set(&settings, values.first ?? "") }
    }

    /// A text whose absence, or an empty value, means none.
    fileprivate static func optionalText(
        _ key: String, _ help: String, none: String? = nil, placeholder: String = "text", secret: Bool = false,
        _ set: @escaping @Sendable (inout ServerSettings, String?) -> Void
    ) -> Setting {
        text(key, help, default: none, placeholder: placeholder, secret: secret) { settings, text in
            set(&settings, text.isEmpty ? nil : text)
        }
    }

    fileprivate static func number(
        _ key: String, _ help: String, default defaultValue: Int?, minimum: Int, maximum: Int = .max, placeholder: String = "n",
        defaultText: String? = nil, _ set: @escaping @Sendable (inout ServerSettings, Int) -> Void
    ) -> Setting {
        let shown = defaultText ?? defaultValue.map(String.init)
        return text(key, help, default: shown, placeholder: placeholder) { settings, text throws(SettingError) in
            let range = maximum == .max ? "at least \(minimum)" : "from \(minimum) to \(maximum)"
            guard let value = Int(text.trimmingCharacters(in: .whitespaces)), value >= minimum, value <= maximum else {
                throw SettingError("\(Self.words(key).joined(separator: " ")) must be a whole number \(range), not '\(text)' (\(flagName(key)), $\(variableName(key)))")
            }
            set(&settings, value)
        }
    }

    fileprivate static func seconds(
        _ key: String, _ help: String, default defaultValue: Duration?, minimum: Int, maximum: Int = .max,
        defaultText: String? = nil, _ set: @escaping @Sendable (inout ServerSettings, Duration) -> Void
    ) -> Setting {
        number(
            key, help, default: defaultValue.map { Int($0.components.seconds) }, minimum: minimum, maximum: maximum,
            placeholder: "seconds", defaultText: defaultText
        ) { settings, value in set(&settings, .seconds(value)) }
    }

    fileprivate static func choice<Choice: RawRepresentable<String> & CaseIterable & Sendable>(
        _ key: String, _ help: String, default defaultValue: Choice, normalise: @escaping @Sendable (String) -> String = { $0 },
        _ set: @escaping @Sendable (inout ServerSettings, Choice) -> Void
    ) -> Setting {
        let names = Choice.allCases.map(\.rawValue)
        return text(key, help, default: defaultValue.rawValue, placeholder: names.joined(separator: "|")) { settings, text throws(SettingError) in
            guard let value = Choice(rawValue: normalise(text)) else {
                let choices = names.dropLast().joined(separator: ", ") + " or " + (names.last ?? "")
                throw SettingError("\(flagName(key)) must be \(choices), not '\(text)'")
            }
            set(&settings, value)
        }
    }

    fileprivate static func onOff(
        _ key: String, _ help: String, default defaultValue: Bool, _ set: @escaping @Sendable (inout ServerSettings, Bool) -> Void
    ) -> Setting {
        text(key, help, default: defaultValue ? "on" : "off", placeholder: "on|off") { settings, text throws(SettingError) in
            guard let value = Self.bool(text) else { throw SettingError("\(flagName(key)) must be on or off, not '\(text)'") }
            set(&settings, value)
        }
    }

    fileprivate static func flag(
        _ key: String, _ help: String, _ set: @escaping @Sendable (inout ServerSettings, Bool) -> Void
    ) -> Setting {
        Setting(key: key, kind: .flag, help: help, defaultText: "off", singularFlag: nil, isSecret: false) {
            settings, values throws(SettingError) in
            // A flag on the command line comes with no value: present means on.
            let text = values.first ?? ""
            guard let value = text.isEmpty ? true : Self.bool(text) else {
                throw SettingError("$\(variableName(key)) must be true or false, not '\(text)'")
            }
            set(&settings, value)
        }
    }

    fileprivate static func list(
        _ key: String, flag singular: String, _ help: String, placeholder: String,
        _ set: @escaping @Sendable (inout ServerSettings, [String]) throws(SettingError) -> Void
    ) -> Setting {
        Setting(key: key, kind: .list(placeholder: placeholder), help: help, defaultText: nil, singularFlag: singular, isSecret: false) {
            settings, values throws(SettingError) in
            try set(&settings, values.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        }
    }

    private static func bool(_ text: String) -> Bool? {
        ["on": true, "true": true, "off": false, "false": false][text.lowercased()]
    }

}

extension ServerSettings {
    /// Every setting of `taskgate serve`, in the order the help lists them.
    public static let table: [Setting] = {
        let d = ServerSettings()
        return [
            .text("host", "Address to listen on; 0.0.0.0 for every interface.", default: d.host, placeholder: "address") { $0.host = $1 },
            .number("port", "Port to listen on.", default: d.port, minimum: 0, maximum: 65535, placeholder: "port") { $0.port = $1 },
            .number("taskWorkers", "Tasks running at once (Swoole's task_worker_num).", default: d.taskWorkers, minimum: 1) {
                $0.taskWorkers = $1
            },
            .number("queueLimit", "Tasks waiting for a worker; beyond it submits get 503 queue_full.", default: d.queueLimit, minimum: 0) {
                $0.queueLimit = $1
            },
            .onOff(
                "fairShare",
                "Within a priority, start the task of the uid (per handler) with the fewest running first, so one uid's burst does not starve the others; off: oldest first.",
                default: d.fairShare
            ) { $0.fairShare = $1 },
            .optionalText(
                "adminToken", "Bearer token for the admin API and admin connections; none: admin from loopback only.",
                placeholder: "token", secret: true
            ) { $0.adminToken = $1 },
            .number(
                "maxMessageBytes", "Largest client message in bytes, after inflating; larger ones get 413.", default: d.maxMessageBytes,
                minimum: 256, placeholder: "bytes"
            ) { $0.maxMessageBytes = $1 },
            .text("publicDir", "Directory of the demo page and other static files.", default: d.publicDirectory, placeholder: "path") {
                $0.publicDirectory = $1
            },
            .text("logDir", "Directory for taskgate.log (everything goes to stdout too); empty: stdout only.", default: d.logDirectory, placeholder: "path") {
                $0.logDirectory = $1.isEmpty ? nil : $1
            },
            .text("logLevel", "trace, debug, info, notice, warning, error or critical.", default: d.logLevel.rawValue, placeholder: "level") {
                settings, text throws(SettingError) in
                guard let level = Logger.Level(rawValue: text) else {
                    throw SettingError("log level must be one of trace, debug, info, notice, warning, error, critical, not '\(text)'")
                }
                settings.logLevel = level
            },
            .seconds("shutdownGrace", "Seconds running tasks get to finish on SIGTERM.", default: d.shutdownGrace, minimum: 0) {
                $0.shutdownGrace = $1
            },
            .choice("store", "sqlite (durable), memory (gone on restart) or postgres (several nodes sharing one database).", default: d.store) {
                $0.store = $1
            },
            .text("dataDir", "Directory of the SQLite database, taskgate.sqlite.", default: d.dataDirectory, placeholder: "path") {
                $0.dataDirectory = $1
            },
            .optionalText(
                "databaseUrl", "PostgreSQL for --store postgres: postgres://user:password@host:5432/database.", placeholder: "url",
                secret: true
            ) { $0.databaseURL = $1 },
            .optionalText("nodeId", "This node's id in a cluster, unique per node.", none: "host name-port", placeholder: "id") {
                $0.nodeID = $1
            },
            .seconds(
                "leaseTimeout", "Seconds a cluster node's running tasks stay leased without its heartbeat; then another node takes them over.",
                default: d.leaseTimeout, minimum: 1
            ) { $0.leaseTimeout = $1 },
            .number("eventRetentionCount", "Events kept per user, for resuming clients.", default: d.eventRetention.count, minimum: 1) {
                $0.eventRetention.count = $1
            },
            .number(
                "eventRetentionHours", "Hours an event is kept.", default: Int(d.eventRetention.maxAge.components.seconds / 3600),
                minimum: 1, placeholder: "hours"
            ) { $0.eventRetention.maxAge = .seconds($1 * 3600) },
            .number(
                "taskRetentionHours",
                "Hours a finished task stays on record; 0 keeps them whatever their age. Queued, scheduled and running tasks are never deleted.",
                default: d.taskRetention.maxAge.map { Int($0.components.seconds / 3600) } ?? 0, minimum: 0, placeholder: "hours"
            ) { $0.taskRetention.maxAge = $1 == 0 ? nil : .seconds($1 * 3600) },
            .number(
                "taskRetentionCount", "Finished tasks kept on record, newest first; 0 for no limit. Pruned in the background; /healthz shows the last run.",
                default: d.taskRetention.count ?? 0, minimum: 0
            ) { $0.taskRetention.count = $1 == 0 ? nil : $1 },
            .seconds("maintenanceInterval", "Seconds between two runs of task retention and the event log's upkeep.", default: d.maintenanceInterval, minimum: 1) {
                $0.maintenanceInterval = $1
            },
            .seconds(
                "headerTimeout", "Seconds a connection has to send a complete request head; then 408 and closed.",
                default: d.httpLimits.headerTimeout, minimum: 1
            ) { $0.httpLimits.headerTimeout = $1 },
            .seconds("keepaliveTimeout", "Seconds an idle keep-alive connection is kept open.", default: d.httpLimits.keepAliveTimeout, minimum: 1) {
                $0.httpLimits.keepAliveTimeout = $1
            },
            .seconds(
                "bodyTimeout", "Seconds a request body may pause between two reads; then 408 and closed.", default: d.httpLimits.bodyTimeout,
                minimum: 1
            ) { $0.httpLimits.bodyTimeout = $1 },
            .number("maxHeaderBytes", "Largest request header block in bytes; then 431 and closed.", default: d.httpLimits.maxHeaderBytes, minimum: 1024, placeholder: "bytes") {
                $0.httpLimits.maxHeaderBytes = $1
            },
            .number(
                "maxRequestLineBytes", "Longest request line in bytes; then 414 and closed.", default: d.httpLimits.maxRequestLineBytes,
                minimum: 256, placeholder: "bytes"
            ) { $0.httpLimits.maxRequestLineBytes = $1 },
            .number(
                "maxHttpConnections", "HTTP connections open at once; at the limit new ones wait to be accepted. The server raises its soft open-file limit to the hard one at start.",
                default: d.httpLimits.maxConnections, minimum: 1, defaultText: "open-file limit - \(HTTPLimits.reservedDescriptors)"
            ) { $0.httpLimits.maxConnections = $1 },
            .seconds(
                "drainTimeout", "Seconds a request under way may take to finish once a shutdown has drained the pool.",
                default: d.httpLimits.drainTimeout, minimum: 0
            ) { $0.httpLimits.drainTimeout = $1 },
            .list(
                "wsPaths", flag: "ws-path", "Another path that upgrades to the WebSocket, besides / and /ws (a plain GET / is the demo page).",
                placeholder: "path"
            ) { settings, paths throws(SettingError) in
                if let problem = paths.lazy.compactMap(WebSocketPaths.problem(with:)).first { throw SettingError("--ws-path: \(problem)") }
                settings.webSocketPaths = paths
            },
            .flag("enableEcho", "Serve /ws/echo, an echo WebSocket on the same stack and settings as /ws (for compliance suites).") {
                $0.enableEchoRoute = $1
            },
            .flag(
                "otel",
                "Export OpenTelemetry traces over OTLP/HTTP, set up by the OTEL_* variables; also on when OTEL_TRACES_EXPORTER=otlp or an OTLP endpoint variable is set, never with OTEL_SDK_DISABLED=true."
            ) { $0.tracing = $1 },
            .choice("auth", "dev (trust ?uid=) or token (signed user tokens only).", default: d.authMode) { $0.authMode = $1 },
            .optionalText("tokenSecret", "Secret user tokens are signed with, in token mode (32/48/64 bytes at least for HS256/384/512).", placeholder: "secret", secret: true) {
                $0.userTokens.secret = $1
            },
            .choice("tokenAlgorithm", "Algorithm of tokens signed with the secret.", default: d.userTokens.secretAlgorithm, normalise: { $0.uppercased() }) {
                $0.userTokens.secretAlgorithm = $1
            },
            .list(
                "tokenKeys", flag: "token-key",
                "A PEM public key or a JWKS file user tokens may be signed with, read again on reload. A PEM key's kid is its file name without the extension; RS256/ES256/EdDSA follow from the key, ALG:path picks another (PS256:backend.pem).",
                placeholder: "[ALG:]path"
            ) { $0.userTokens.keyFiles = $1 },
            .optionalText("tokenIssuer", "The 'iss' user tokens must carry; none: not checked.", placeholder: "issuer") { $0.userTokens.issuer = $1 },
            .optionalText("tokenAudience", "A value the 'aud' of user tokens must include; none: not checked.", placeholder: "audience") {
                $0.userTokens.audience = $1
            },
            .seconds("tokenLeeway", "Seconds of clock skew allowed on a token's exp and nbf.", default: d.userTokens.leeway, minimum: 0, maximum: 3600) {
                $0.userTokens.leeway = $1
            },
            .list("allowedOrigins", flag: "allowed-origin", "A browser origin allowed besides the page's own and localhost; * for any.", placeholder: "origin") {
                $0.allowedOrigins = $1
            },
            .number("maxConnectionsPerUid", "WebSocket/SSE connections per uid.", default: d.limits.connectionsPerUID, minimum: 1) {
                $0.limits.connectionsPerUID = $1
            },
            .number("maxConnections", "WebSocket/SSE connections in all.", default: d.limits.connections, minimum: 1) { $0.limits.connections = $1 },
            .number("maxMessagesPerSecond", "Messages per second per connection (bursts up to twice).", default: d.limits.messagesPerSecond, minimum: 1) {
                $0.limits.messagesPerSecond = $1
            },
            .number("maxTasksPerUid", "Queued and running tasks per uid.", default: d.limits.tasksPerUID, minimum: 1) { $0.limits.tasksPerUID = $1 },
            .number("maxPollsPerUid", "Long-polls waiting at once per uid.", default: d.limits.pollsPerUID, minimum: 1) { $0.limits.pollsPerUID = $1 },
            .number(
                "maxOutboundMessages", "Messages waiting to be written to one WebSocket/SSE connection before it is closed (1013).",
                default: d.limits.outbound.messages, minimum: 1
            ) { $0.limits.outbound.messages = $1 },
            .number(
                "outboundBytes", "Bytes waiting to be written to one WebSocket/SSE connection before it is closed (1013).",
                default: d.limits.outbound.bytes, minimum: 1, placeholder: "bytes"
            ) { $0.limits.outbound.bytes = $1 },
        ]
    }()

    /// Reads every setting: its flag in `arguments` (`serve`'s, without the program and command names), else its
    /// `TASKGATE_*` variable, else the config file's `server` section (`file`, by file key), else the default. Then
    /// the rules between settings.
    public static func read(
        arguments: [String], environment: [String: String], file: [String: [String]] = [:], fileName: String = "the config file"
    ) throws(SettingError) -> ServerSettings {
        let flags = try parseFlags(arguments)
        var fileValues: [AbsoluteConfigKey: ConfigValue] = [:]
        for (fileKey, texts) in file.sorted(by: { $0.key < $1.key }) {
            guard let setting = table.first(where: { $0.fileKey == fileKey }) else {
                throw SettingError("\(fileName): server.\(fileKey): no such setting (see taskgate serve --help)")
            }
            // Checked on its own first, so that a bad value in the file is named by its place there.
            var scratch = ServerSettings()
            do {
                try setting.apply(&scratch, texts)
            } catch {
                throw SettingError("\(fileName): server.\(fileKey): \(error.description)")
            }
            let content: ConfigContent = setting.kind.isList ? .stringArray(texts) : .string(texts.first ?? "")
            fileValues[AbsoluteConfigKey([setting.key])] = ConfigValue(content, isSecret: setting.isSecret)
        }
        // `TASKGATE_TASK_WORKERS` is the key `taskWorkers` without the prefix the process environment needs.
        var variables: [String: String] = [:]
        for (name, value) in environment where name.hasPrefix("TASKGATE_") { variables[String(name.dropFirst("TASKGATE_".count))] = value }
        let secretVariables = Set(table.filter(\.isSecret).map { String($0.environmentVariable.dropFirst("TASKGATE_".count)) })
        let config = ConfigReader(providers: [
            InMemoryProvider(name: "flags", values: flags),
            EnvironmentVariablesProvider(environmentVariables: variables, secretsSpecifier: .specific(secretVariables)),
            InMemoryProvider(name: "config file", values: fileValues),
        ])
        var settings = ServerSettings()
        for setting in table {
            let values: [String]?
            switch setting.kind {
            case .value, .flag: values = config.string(forKey: ConfigKey(setting.key), isSecret: setting.isSecret).map { [$0] }
            case .list: values = config.stringArray(forKey: ConfigKey(setting.key))
            }
            if let values { try setting.apply(&settings, values) }
        }
        settings.tracing = OTelTracing.isWanted(flag: settings.tracing, environment: environment)
        try settings.checkRulesBetweenSettings()
        return settings
    }

    private func checkRulesBetweenSettings() throws(SettingError) {
        if store == .postgres, databaseURL == nil {
            throw SettingError("--store postgres needs --database-url (or $TASKGATE_DATABASE_URL)")
        }
        if let secret = userTokens.secret, let problem = userTokens.secretAlgorithm.problem(with: secret) {
            throw SettingError("--token-secret (or $TASKGATE_TOKEN_SECRET): \(problem)")
        }
        if authMode == .token, !userTokens.hasKeys {
            throw SettingError("token mode needs --token-secret (or $TASKGATE_TOKEN_SECRET) or --token-key")
        }
    }

    /// `--key value`, `--key=value` and `--flag`, each checked against the table: an unknown or misspelled flag is
    /// an error, not a setting silently ignored.
    static func parseFlags(_ arguments: [String]) throws(SettingError) -> [AbsoluteConfigKey: ConfigValue] {
        var lists: [String: [String]] = [:]
        var values: [AbsoluteConfigKey: ConfigValue] = [:]
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("--") else {
                throw SettingError("unexpected argument '\(argument)' (see taskgate serve --help)")
            }
            let name = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
            var inline: String? = argument.contains("=") ? String(argument.drop(while: { $0 != "=" }).dropFirst()) : nil
            guard let setting = table.first(where: { $0.flag == name }) else {
                throw SettingError("unknown option '\(name)' (see taskgate serve --help)")
            }
            if setting.kind == .flag {
                values[AbsoluteConfigKey([setting.key])] = ConfigValue(.string(inline ?? ""), isSecret: false)
                continue
            }
            if inline == nil {
                guard index < arguments.count else { throw SettingError("\(name) needs a value") }
                inline = arguments[index]
                index += 1
            }
            let value = inline ?? ""
            if case .list = setting.kind {
                lists[setting.key, default: []].append(value)
            } else {
                values[AbsoluteConfigKey([setting.key])] = ConfigValue(.string(value), isSecret: setting.isSecret)
            }
        }
        for (key, items) in lists { values[AbsoluteConfigKey([key])] = ConfigValue(.stringArray(items), isSecret: false) }
        return values
    }

    /// The settings as `taskgate serve --help` lists them.
    public static var helpText: String {
        table.map { setting in
            var line = "  " + setting.flag
            switch setting.kind {
            case .value(let placeholder): line += " <\(placeholder)>"
            case .list(let placeholder): line += " <\(placeholder)> (repeatable)"
            case .flag: break
            }
            var notes: [String] = []
            if let shown = setting.defaultText { notes.append("default: \(shown)") }
            notes.append("$\(setting.environmentVariable)" + (setting.kind.isList ? ", comma-separated" : ""))
            return line + "\n      " + setting.help + " [" + notes.joined(separator: "; ") + "]"
        }.joined(separator: "\n")
    }

    /// The README's table of settings, made from the same table as the help.
    public static var markdownTable: String {
        var lines = ["| Flag | Variable | Default | Meaning |", "|---|---|---|---|"]
        for setting in table {
            let shown = setting.defaultText.map { "`\($0)`" } ?? "—"
            lines.append("| `\(setting.flag)` | `$\(setting.environmentVariable)` | \(shown) | \(setting.help.replacingOccurrences(of: "|", with: "\\|")) |")
        }
        return lines.joined(separator: "\n")
    }
}

extension Setting.Kind {
    var isList: Bool {
        if case .list = self { return true }
        return false
    }
}
