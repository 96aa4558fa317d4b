import ArgumentParser
import Foundation
import Logging
import TaskGateCore
import TaskGateServer

/// `taskgate serve`: every setting comes from, in order, the command line, a `TASKGATE_*` environment variable, the
/// config file's `server` section, or the default.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the server (WebSocket, long-poll, REST admin and demo page on one port).",
        aliases: ["start"]
    )

    @Option(help: "Config file with server options and handlers (default: $TASKGATE_CONFIG; none: built-ins only).")
    var config: String?

    @Option(help: "Address to listen on; 0.0.0.0 for every interface. [127.0.0.1]")
    var host: String?

    @Option(help: "Port to listen on. [9501]")
    var port: Int?

    @Option(help: "How many tasks run at once (Swoole's task_worker_num). [4]")
    var taskWorkers: Int?

    @Option(help: "How many tasks may wait for a worker before submits get 503 queue_full. [1000]")
    var queueLimit: Int?

    @Option(help: "Bearer token for the admin API ($TASKGATE_ADMIN_TOKEN; none: admin from loopback only).")
    var adminToken: String?

    @Option(help: "Directory of the demo page and other static files. [public]")
    var publicDir: String?

    @Option(help: "Directory for taskgate.log; empty for stdout only. [log]")
    var logDir: String?

    @Option(help: "trace, debug, info, notice, warning, error or critical. [info]")
    var logLevel: String?

    @Option(help: "Largest client message in bytes, after inflating. [65536]")
    var maxMessageBytes: Int?

    @Option(help: "Seconds running tasks get to finish on SIGTERM. [10]")
    var shutdownGrace: Int?

    @Option(help: "sqlite (durable), memory (gone on restart) or postgres (several nodes sharing one database). [sqlite]")
    var store: String?

    @Option(help: "PostgreSQL for --store postgres: postgres://user:password@host:5432/database ($TASKGATE_DATABASE_URL).")
    var databaseURL: String?

    @Option(help: "This node's id in a cluster, unique per node ($TASKGATE_NODE_ID). [host name-port]")
    var nodeID: String?

    @Option(help: "Seconds a cluster node's running tasks stay leased without its heartbeat; then another node takes them over. [10]")
    var leaseTimeout: Int?

    @Option(help: "on: the next task to start is the uid's (per handler) with the fewest running, so one uid's burst does not starve others; off: first in, first out. Within a priority either way. [on]")
    var fairShare: String?

    @Option(help: "Directory of the SQLite database, taskgate.sqlite. [data]")
    var dataDir: String?

    @Option(help: "Events kept per user, for resuming clients. [1000]")
    var eventRetentionCount: Int?

    @Option(help: "Hours an event is kept. [168]")
    var eventRetentionHours: Int?

    @Option(help: "Hours a finished task stays on record; 0 keeps them whatever their age. [168]")
    var taskRetentionHours: Int?

    @Option(help: "Finished tasks kept on record, newest first; 0 for no limit. [100000]")
    var taskRetentionCount: Int?

    @Option(help: "Seconds between two runs of task retention and event upkeep. [60]")
    var maintenanceInterval: Int?

    @Option(name: .customLong("ws-path"), help: "Another path that upgrades to the WebSocket, besides / and /ws (repeatable; $TASKGATE_WS_PATHS, comma-separated).")
    var webSocketPaths: [String] = []

    @Flag(name: .customLong("enable-echo"), help: "Serve /ws/echo, an echo WebSocket on the same stack (for compliance tests).")
    var enableEchoRoute = false

    @Flag(
        name: .customLong("otel"),
        help: "Export OpenTelemetry traces over OTLP/HTTP (configured by the OTEL_* variables; also on when OTEL_TRACES_EXPORTER=otlp or an OTLP endpoint is set).")
    var otel = false

    @Option(help: "dev (trust ?uid=) or token (signed user tokens only). [dev]")
    var auth: String?

    @Option(help: "Secret user tokens are signed with, in token mode ($TASKGATE_TOKEN_SECRET).")
    var tokenSecret: String?

    @Option(help: "Algorithm of tokens signed with the secret: HS256, HS384 or HS512. [HS256]")
    var tokenAlgorithm: String?

    @Option(name: .customLong("token-key"), help: ArgumentHelp(
        "A PEM public key or a JWKS file user tokens may be signed with, read again on reload (repeatable; $TASKGATE_TOKEN_KEYS, comma-separated). A PEM key's kid is its file name without the extension; RS256/ES256/EdDSA follow from the key, ALG:path picks another (PS256:backend.pem).",
        valueName: "[ALG:]path"))
    var tokenKeys: [String] = []

    @Option(help: "The 'iss' user tokens must carry ($TASKGATE_TOKEN_ISSUER; none: not checked).")
    var tokenIssuer: String?

    @Option(help: "A value the 'aud' of user tokens must include ($TASKGATE_TOKEN_AUDIENCE; none: not checked).")
    var tokenAudience: String?

    @Option(help: "Seconds of clock skew allowed on a token's exp and nbf. [\(UserTokenSettings().leeway.components.seconds)]")
    var tokenLeeway: Int?

    @Option(name: .customLong("allowed-origin"), help: "A browser origin allowed besides the page's own and localhost (repeatable; * for any).")
    var allowedOrigins: [String] = []

    @Option(help: "WebSocket/SSE connections per uid. [16]")
    var maxConnectionsPerUid: Int?

    @Option(help: "WebSocket/SSE connections in all. [10000]")
    var maxConnections: Int?

    @Option(help: "Messages per second per connection (bursts up to twice). [50]")
    var maxMessagesPerSecond: Int?

    @Option(help: "Queued and running tasks per uid. [100]")
    var maxTasksPerUid: Int?

    @Option(help: "Long-polls waiting at once per uid. [4]")
    var maxPollsPerUid: Int?

    @Option(help: "Messages waiting to be written to one WebSocket/SSE connection before it is closed (1013). [\(OutboundLimits().messages)]")
    var maxOutboundMessages: Int?

    @Option(help: "Bytes waiting to be written to one WebSocket/SSE connection before it is closed (1013). [\(OutboundLimits().bytes)]")
    var outboundBytes: Int?

    @Option(help: "Seconds a connection has to send its first request head (then 408). [\(HTTPLimits().headerTimeout.components.seconds)]")
    var headerTimeout: Int?

    @Option(help: "Seconds an idle keep-alive connection is kept. [\(HTTPLimits().keepAliveTimeout.components.seconds)]")
    var keepaliveTimeout: Int?

    @Option(help: "Seconds a request body may pause between two reads (then 408). [\(HTTPLimits().bodyTimeout.components.seconds)]")
    var bodyTimeout: Int?

    @Option(help: "Largest request header block in bytes (then 431). [\(HTTPLimits().maxHeaderBytes)]")
    var maxHeaderBytes: Int?

    @Option(help: "Longest request line in bytes (then 414). [\(HTTPLimits().maxRequestLineBytes)]")
    var maxRequestLineBytes: Int?

    @Option(help: "HTTP connections open at once; past it new ones wait to be accepted. [open-file limit - \(HTTPLimits.reservedDescriptors)]")
    var maxHttpConnections: Int?

    @Option(help: "Seconds a request under way may take to finish once a shutdown begins. [\(HTTPLimits().drainTimeout.components.seconds)]")
    var drainTimeout: Int?

    func run() async throws {
        let settings = try ServeSettings(self, environment: ProcessInfo.processInfo.environment)
        do {
            try bootstrapLogging(directory: settings.logDirectory, level: settings.logLevel)
        } catch {
            throw CLIError(description: "cannot write logs under '\(settings.logDirectory ?? "")': \(error.localizedDescription)")
        }
        OpenFileLimit.raiseToHardLimit()
        try await buildServer(settings, backend: try clusterBackend(settings)).run()
    }
}

/// The resolved settings of `serve`.
struct ServeSettings: AppArguments {
    var host: String
    var port: Int
    var taskWorkers: Int
    var queueLimit: Int
    var adminToken: String?
    var publicDirectory: String
    var logDirectory: String?
    var logLevel: Logger.Level
    var maxMessageBytes: Int
    var shutdownGrace: Duration
    var store: StoreKind
    var dataDirectory: String
    var databaseURL: String?
    var nodeID: String?
    var leaseTimeout: Duration
    var fairShare: Bool
    var taskRetention: TaskRetention
    var maintenanceInterval: Duration
    var eventRetention: EventLog.Retention
    var enableEchoRoute: Bool
    var webSocketPaths: [String]
    var httpLimits: HTTPLimits
    var configPath: String?
    var authMode: AuthMode
    var userTokens: UserTokenSettings
    var allowedOrigins: [String]
    var limits: Limits
    var tracing: Bool

    init(_ flags: ServeCommand, environment: [String: String]) throws {
        configPath = flags.config ?? environment["TASKGATE_CONFIG"]
        var file = GatewayConfig.ServerSettings()
        if let configPath {
            do {
                file = try ConfigLoader.load(path: configPath).server
            } catch {
                throw CLIError(description: "bad config: \(error)")
            }
        }
        func pick<Value>(_ flag: Value?, _ variable: String, _ fromFile: Value?, _ fallback: Value, parse: (String) -> Value?) throws -> Value {
            if let flag { return flag }
            if let text = environment[variable], !text.isEmpty {
                guard let value = parse(text) else { throw ValidationError("$\(variable) has an invalid value '\(text)'") }
                return value
            }
            return fromFile ?? fallback
        }
        let text: (String) -> String? = { $0 }
        /// A text setting whose absence (or an empty value) means none.
        func pickOptional(_ flag: String?, _ variable: String, _ fromFile: String?) throws -> String? {
            let value = try pick(flag, variable, fromFile, "", parse: text)
            return value.isEmpty ? nil : value
        }
        let number: (String) -> Int? = { Int($0) }
        host = try pick(flags.host, "TASKGATE_HOST", file.host, "127.0.0.1", parse: text)
        port = try pick(flags.port, "TASKGATE_PORT", file.port, 9501, parse: number)
        taskWorkers = try pick(flags.taskWorkers, "TASKGATE_TASK_WORKERS", file.taskWorkers, 4, parse: number)
        queueLimit = try pick(flags.queueLimit, "TASKGATE_QUEUE_LIMIT", file.queueLimit, 1000, parse: number)
        adminToken = try pickOptional(flags.adminToken, "TASKGATE_ADMIN_TOKEN", file.adminToken)
        publicDirectory = try pick(flags.publicDir, "TASKGATE_PUBLIC_DIR", file.publicDir, "public", parse: text)
        let logs = try pick(flags.logDir, "TASKGATE_LOG_DIR", file.logDir, "log", parse: text)
        logDirectory = logs.isEmpty ? nil : logs
        let level = try pick(flags.logLevel, "TASKGATE_LOG_LEVEL", file.logLevel, "info", parse: text)
        guard let parsedLevel = Logger.Level(rawValue: level) else {
            throw ValidationError("log level must be one of trace, debug, info, notice, warning, error, critical")
        }
        logLevel = parsedLevel
        maxMessageBytes = try pick(flags.maxMessageBytes, "TASKGATE_MAX_MESSAGE_BYTES", file.maxMessageBytes, 64 * 1024, parse: number)
        shutdownGrace = .seconds(try pick(flags.shutdownGrace, "TASKGATE_SHUTDOWN_GRACE", file.shutdownGrace, 10, parse: number))
        let storeName = try pick(flags.store, "TASKGATE_STORE", file.store, "sqlite", parse: text)
        guard let parsedStore = StoreKind(rawValue: storeName) else { throw ValidationError("store must be sqlite, memory or postgres") }
        store = parsedStore
        dataDirectory = try pick(flags.dataDir, "TASKGATE_DATA_DIR", file.dataDir, "data", parse: text)
        databaseURL = try pickOptional(flags.databaseURL, "TASKGATE_DATABASE_URL", file.databaseURL)
        nodeID = try pickOptional(flags.nodeID, "TASKGATE_NODE_ID", file.nodeID)
        let lease = try pick(flags.leaseTimeout, "TASKGATE_LEASE_TIMEOUT", file.leaseTimeout, 10, parse: number)
        guard lease >= 1 else { throw ValidationError("lease timeout must be at least 1 second") }
        leaseTimeout = .seconds(lease)
        let fairShareText = try pick(flags.fairShare, "TASKGATE_FAIR_SHARE", file.fairShare.map { $0 ? "on" : "off" }, "on", parse: text)
        guard let fair = ["on": true, "true": true, "off": false, "false": false][fairShareText.lowercased()] else {
            throw ValidationError("--fair-share must be on or off")
        }
        fairShare = fair
        let retentionHours = try pick(
            flags.taskRetentionHours, "TASKGATE_TASK_RETENTION_HOURS", file.taskRetentionHours, 168, parse: number)
        let retentionCount = try pick(
            flags.taskRetentionCount, "TASKGATE_TASK_RETENTION_COUNT", file.taskRetentionCount, TaskRetention.defaultCount,
            parse: number)
        guard retentionHours >= 0, retentionCount >= 0 else {
            throw ValidationError("task retention hours and count must not be negative (0: no limit)")
        }
        taskRetention = TaskRetention(
            maxAge: retentionHours == 0 ? nil : .seconds(retentionHours * 3600), count: retentionCount == 0 ? nil : retentionCount)
        let interval = try pick(flags.maintenanceInterval, "TASKGATE_MAINTENANCE_INTERVAL", nil, 60, parse: number)
        guard interval >= 1 else { throw ValidationError("--maintenance-interval must be at least 1 second") }
        maintenanceInterval = .seconds(interval)
        if store == .postgres, databaseURL == nil {
            throw ValidationError("--store postgres needs --database-url (or $TASKGATE_DATABASE_URL)")
        }
        let retainCount = flags.eventRetentionCount ?? 1000
        let retainHours = flags.eventRetentionHours ?? 168
        eventRetention = .init(count: retainCount, maxAge: .seconds(retainHours * 3600))
        enableEchoRoute = flags.enableEchoRoute
        webSocketPaths = flags.webSocketPaths.isEmpty ? Self.list(environment["TASKGATE_WS_PATHS"]) : flags.webSocketPaths
        if let problem = webSocketPaths.lazy.compactMap(WebSocketPaths.problem(with:)).first {
            throw ValidationError("--ws-path: \(problem)")
        }
        tracing = OTelTracing.isWanted(flag: flags.otel, environment: environment)
        var http = HTTPLimits()
        http.headerTimeout = flags.headerTimeout.map { .seconds($0) } ?? http.headerTimeout
        http.keepAliveTimeout = flags.keepaliveTimeout.map { .seconds($0) } ?? http.keepAliveTimeout
        http.bodyTimeout = flags.bodyTimeout.map { .seconds($0) } ?? http.bodyTimeout
        http.drainTimeout = flags.drainTimeout.map { .seconds($0) } ?? http.drainTimeout
        http.maxHeaderBytes = flags.maxHeaderBytes ?? http.maxHeaderBytes
        http.maxRequestLineBytes = flags.maxRequestLineBytes ?? http.maxRequestLineBytes
        http.maxConnections = flags.maxHttpConnections ?? http.maxConnections
        guard [http.headerTimeout, http.keepAliveTimeout, http.bodyTimeout].allSatisfy({ $0 >= .seconds(1) }), http.drainTimeout >= .zero
        else { throw ValidationError("HTTP timeouts must be at least 1 second (the drain timeout at least 0)") }
        guard http.maxHeaderBytes >= 1024, http.maxRequestLineBytes >= 256, (http.maxConnections ?? 1) >= 1 else {
            throw ValidationError("--max-header-bytes must be at least 1024, --max-request-line-bytes at least 256")
        }
        httpLimits = http
        let mode = try pick(flags.auth, "TASKGATE_AUTH", nil, "dev", parse: text)
        guard let parsedMode = AuthMode(rawValue: mode) else { throw ValidationError("auth must be dev or token") }
        authMode = parsedMode
        var tokens = UserTokenSettings()
        tokens.secret = try pickOptional(flags.tokenSecret, "TASKGATE_TOKEN_SECRET", nil)
        let algorithm = try pick(flags.tokenAlgorithm, "TASKGATE_TOKEN_ALGORITHM", nil, tokens.secretAlgorithm.rawValue, parse: text)
        guard let parsedAlgorithm = UserTokenSettings.HMACAlgorithm(rawValue: algorithm.uppercased()) else {
            throw ValidationError("--token-algorithm must be HS256, HS384 or HS512 (keys name their own algorithm)")
        }
        tokens.secretAlgorithm = parsedAlgorithm
        tokens.keyFiles = flags.tokenKeys.isEmpty ? Self.list(environment["TASKGATE_TOKEN_KEYS"]) : flags.tokenKeys
        tokens.issuer = try pickOptional(flags.tokenIssuer, "TASKGATE_TOKEN_ISSUER", nil)
        tokens.audience = try pickOptional(flags.tokenAudience, "TASKGATE_TOKEN_AUDIENCE", nil)
        let leeway = try pick(flags.tokenLeeway, "TASKGATE_TOKEN_LEEWAY", nil, Int(tokens.leeway.components.seconds), parse: number)
        guard (0...3600).contains(leeway) else { throw ValidationError("--token-leeway must be 0 to 3600 seconds") }
        tokens.leeway = .seconds(leeway)
        if let secret = tokens.secret, let problem = tokens.secretAlgorithm.problem(with: secret) {
            throw ValidationError("--token-secret (or $TASKGATE_TOKEN_SECRET): \(problem)")
        }
        if authMode == .token, !tokens.hasKeys {
            throw ValidationError("token mode needs --token-secret (or $TASKGATE_TOKEN_SECRET) or --token-key")
        }
        userTokens = tokens
        allowedOrigins = flags.allowedOrigins.isEmpty ? Self.list(environment["TASKGATE_ALLOWED_ORIGINS"]) : flags.allowedOrigins
        var limits = Limits()
        limits.connectionsPerUID = flags.maxConnectionsPerUid ?? limits.connectionsPerUID
        limits.connections = flags.maxConnections ?? limits.connections
        limits.messagesPerSecond = flags.maxMessagesPerSecond ?? limits.messagesPerSecond
        limits.tasksPerUID = flags.maxTasksPerUid ?? limits.tasksPerUID
        limits.pollsPerUID = flags.maxPollsPerUid ?? limits.pollsPerUID
        limits.outbound.messages = flags.maxOutboundMessages ?? limits.outbound.messages
        limits.outbound.bytes = flags.outboundBytes ?? limits.outbound.bytes
        self.limits = limits
        guard [limits.connectionsPerUID, limits.connections, limits.messagesPerSecond, limits.tasksPerUID, limits.pollsPerUID,
               limits.outbound.messages, limits.outbound.bytes].allSatisfy({ $0 >= 1 })
        else { throw ValidationError("every --max-… limit must be at least 1") }

        guard (0...65535).contains(port) else { throw ValidationError("port must be from 0 to 65535") }
        guard taskWorkers >= 1 else { throw ValidationError("task workers must be at least 1") }
        guard queueLimit >= 0 else { throw ValidationError("queue limit must not be negative") }
        guard maxMessageBytes >= 256 else { throw ValidationError("max message bytes must be at least 256") }
        guard shutdownGrace >= .zero else { throw ValidationError("shutdown grace must not be negative") }
        guard retainCount >= 1, retainHours >= 1 else { throw ValidationError("event retention must be at least 1 event and 1 hour") }
    }

    /// A comma-separated environment variable as a list.
    private static func list(_ value: String?) -> [String] {
        (value ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }
}
