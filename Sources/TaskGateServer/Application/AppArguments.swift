import Logging
import TaskGateCore

/// Everything `buildApplication` needs to know; the CLI's `serve` command and the tests both provide it.
public protocol AppArguments: Sendable {
    var host: String { get }
    var port: Int { get }
    var taskWorkers: Int { get }
    var queueLimit: Int { get }
    /// Bearer token for the admin API and admin WebSocket connections; `nil`: admin from loopback only.
    var adminToken: String? { get }
    var publicDirectory: String { get }
    /// Where `taskgate.log` goes; `nil`: stdout only.
    var logDirectory: String? { get }
    var logLevel: Logger.Level { get }
    /// Largest client message, in bytes, after inflating.
    var maxMessageBytes: Int { get }
    var shutdownGrace: Duration { get }
    var store: StoreKind { get }
    /// Where the SQLite database lives.
    var dataDirectory: String { get }
    /// The PostgreSQL database several nodes share (`--store postgres`).
    var databaseURL: String? { get }
    /// This node's id in a cluster (unique per node).
    var nodeID: String? { get }
    /// How long a cluster node's running tasks stay leased without its heartbeat.
    var leaseTimeout: Duration { get }
    /// Turns across uids (per handler) for the next task to start; off: first in, first out within a priority.
    var fairShare: Bool { get }
    /// How long finished tasks stay on record.
    var taskRetention: TaskRetention { get }
    /// How often retention and the event log's upkeep run.
    var maintenanceInterval: Duration { get }
    var eventRetention: EventLog.Retention { get }
    /// Serve `/ws/echo` (for WebSocket compliance suites).
    var enableEchoRoute: Bool { get }
    /// Paths that upgrade to the gateway's WebSocket besides `/` and `/ws` (`--ws-path`).
    var webSocketPaths: [String] { get }
    /// Deadlines and sizes every HTTP connection is held to.
    var httpLimits: HTTPLimits { get }
    /// The config file declaring handlers (`taskgate.json`); `nil`: built-in handlers only.
    var configPath: String? { get }
    var authMode: AuthMode { get }
    /// The keys user tokens are checked with, and the claims they need (token mode).
    var userTokens: UserTokenSettings { get }
    /// Browser origins allowed besides the page's own and localhost; `*` allows every origin.
    var allowedOrigins: [String] { get }
    var limits: Limits { get }
    /// OpenTelemetry tracing (spans exported over OTLP/HTTP, configured by the `OTEL_*` variables).
    var tracing: Bool { get }
}

public enum StoreKind: String, Sendable, CaseIterable {
    /// Tasks and events in memory: fast, gone on restart (tests, throwaway runs).
    case memory
    /// `taskgate.sqlite` in the data directory: survives restarts and crashes (the default).
    case sqlite
    /// A PostgreSQL database that several nodes share (`--database-url`).
    case postgres
}

extension AppArguments {
    public var maxMessageBytes: Int { 64 * 1024 }
    public var shutdownGrace: Duration { .seconds(10) }
    public var store: StoreKind { .sqlite }
    public var dataDirectory: String { "data" }
    public var databaseURL: String? { nil }
    public var nodeID: String? { nil }
    public var leaseTimeout: Duration { .seconds(10) }
    public var fairShare: Bool { true }
    public var taskRetention: TaskRetention { .init() }
    public var maintenanceInterval: Duration { .seconds(60) }
    public var eventRetention: EventLog.Retention { .init() }
    public var enableEchoRoute: Bool { false }
    public var webSocketPaths: [String] { [] }
    public var httpLimits: HTTPLimits { HTTPLimits() }
    public var configPath: String? { nil }
    public var authMode: AuthMode { .dev }
    public var userTokens: UserTokenSettings { UserTokenSettings() }
    public var allowedOrigins: [String] { [] }
    public var limits: Limits { Limits() }
    public var tracing: Bool { false }

    /// What every connection may send.
    var inboundLimits: InboundLimits {
        InboundLimits(maxMessageBytes: maxMessageBytes, messagesPerSecond: limits.messagesPerSecond)
    }
}

/// Plain values, for tests and embedding (in memory unless told otherwise).
public struct GatewayArguments: AppArguments {
    public var host = "127.0.0.1"
    public var port = 9501
    public var taskWorkers = 4
    public var queueLimit = 1000
    public var adminToken: String?
    public var publicDirectory = "public"
    public var logDirectory: String?
    public var logLevel = Logger.Level.info
    public var maxMessageBytes = 64 * 1024
    public var shutdownGrace = Duration.seconds(10)
    public var store = StoreKind.memory
    public var dataDirectory = "data"
    public var databaseURL: String?
    public var nodeID: String?
    public var leaseTimeout = Duration.seconds(10)
    public var eventRetention = EventLog.Retention()
    public var enableEchoRoute = false
    public var webSocketPaths: [String] = []
    public var httpLimits = HTTPLimits()
    public var configPath: String?
    public var authMode = AuthMode.dev
    public var userTokens = UserTokenSettings()
    public var allowedOrigins: [String] = []
    public var limits = Limits()
    public var tracing = false

    public init() {}
}
