import Logging
import TaskGateCore

/// Everything the server needs to know, the one settings type: `taskgate serve` reads it from flags, `TASKGATE_*`
/// variables and the config file (`ServerSettings.read`, from the table in `ServerSettings+Table.swift`), tests and
/// embedders set its fields. Each default is written here once; the help text and the README's table show these.
public struct ServerSettings: Sendable {
    public var host = "127.0.0.1"
    public var port = 9501
    public var taskWorkers = TaskPool.Configuration().workers
    public var queueLimit = TaskPool.Configuration().queueLimit
    /// Bearer token for the admin API and admin WebSocket connections; `nil`: admin from loopback only.
    public var adminToken: String?
    public var publicDirectory = "public"
    /// Where `taskgate.log` goes; `nil`: stdout only.
    public var logDirectory: String? = "log"
    public var logLevel = Logger.Level.info
    /// Largest client message, in bytes, after inflating.
    public var maxMessageBytes = 64 * 1024
    public var shutdownGrace = Duration.seconds(10)
    public var store = StoreKind.sqlite
    /// Where the SQLite database lives.
    public var dataDirectory = "data"
    /// The PostgreSQL database several nodes share (`--store postgres`).
    public var databaseURL: String?
    /// This node's id in a cluster (unique per node); `nil`: host name and port.
    public var nodeID: String?
    /// How long a cluster node's running tasks stay leased without its heartbeat.
    public var leaseTimeout = Duration.seconds(10)
    /// Turns across uids (per handler) for the next task to start; off: first in, first out within a priority.
    public var fairShare = TaskPool.Configuration().fairShare
    /// How long finished tasks stay on record.
    public var taskRetention = TaskRetention()
    /// How often retention and the event log's upkeep run.
    public var maintenanceInterval = Duration.seconds(60)
    public var eventRetention = EventLog.Retention()
    /// Serve `/ws/echo` (for WebSocket compliance suites).
    public var enableEchoRoute = false
    /// Paths that upgrade to the gateway's WebSocket besides `/` and `/ws` (`--ws-path`).
    public var webSocketPaths: [String] = []
    /// Deadlines and sizes every HTTP connection is held to.
    public var httpLimits = HTTPLimits()
    /// The config file declaring handlers (`taskgate.json`); `nil`: built-in handlers only.
    public var configPath: String?
    public var authMode = AuthMode.dev
    /// The keys user tokens are checked with, and the claims they need (token mode).
    public var userTokens = UserTokenSettings()
    /// Browser origins allowed besides the page's own and localhost; `*` allows every origin.
    public var allowedOrigins: [String] = []
    public var limits = Limits()
    /// OpenTelemetry tracing (spans exported over OTLP/HTTP, configured by the `OTEL_*` variables).
    public var tracing = false

    public init() {}

    /// What every connection may send.
    var inboundLimits: InboundLimits {
        InboundLimits(maxMessageBytes: maxMessageBytes, messagesPerSecond: limits.messagesPerSecond)
    }
}

public enum StoreKind: String, Sendable, CaseIterable {
    /// Tasks and events in memory: fast, gone on restart (tests, throwaway runs).
    case memory
    /// `taskgate.sqlite` in the data directory: survives restarts and crashes (the default).
    case sqlite
    /// A PostgreSQL database that several nodes share (`--database-url`).
    case postgres
}
