import ArgumentParser
import Foundation
import Hummingbird
import Logging
import TaskGateCore
import TaskGateServer

struct ServeCommand: AsyncParsableCommand, AppArguments {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the server (WebSocket, long-poll, REST admin and demo page on one port).",
        aliases: ["start"]
    )

    @Option(help: "Address to listen on; 0.0.0.0 for every interface.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on.")
    var port = 9501

    @Option(help: "How many tasks run at once (the seed's task_worker_num).")
    var taskWorkers = 4

    @Option(help: "How many tasks may wait for a worker before submits get 503 queue_full.")
    var queueLimit = 1000

    @Option(name: .customLong("admin-token"), help: "Bearer token for the admin API (default: $TASKGATE_ADMIN_TOKEN; none: loopback only).")
    var adminTokenOption: String?

    @Option(name: .customLong("public-dir"), help: "Directory of the demo page and other static files.")
    var publicDirectory = "public"

    @Option(name: .customLong("log-dir"), help: "Directory for taskgate.log; empty for stdout only.")
    var logDirectoryOption = "log"

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevelOption = "info"

    @Option(help: "Largest client message in bytes (after inflating).")
    var maxMessageBytes = 64 * 1024

    @Option(name: .customLong("shutdown-grace"), help: "Seconds running tasks get to finish on SIGTERM.")
    var shutdownGraceSeconds = 10

    @Option(name: .customLong("store"), help: "sqlite (durable, the default) or memory (gone on restart).")
    var storeOption = StoreKind.sqlite.rawValue

    @Option(name: .customLong("data-dir"), help: "Directory of the SQLite database (taskgate.sqlite).")
    var dataDirectory = "data"

    @Option(help: "Events kept per user (for resuming clients).")
    var eventRetentionCount = 1000

    @Option(help: "Hours an event is kept.")
    var eventRetentionHours = 168

    @Flag(name: .customLong("enable-echo"), help: "Serve /ws/echo, an echo WebSocket on the same stack (for compliance tests).")
    var enableEchoRoute = false

    var adminToken: String? {
        let token = adminTokenOption ?? ProcessInfo.processInfo.environment["TASKGATE_ADMIN_TOKEN"]
        return token?.isEmpty == false ? token : nil
    }
    var logDirectory: String? { logDirectoryOption.isEmpty ? nil : logDirectoryOption }
    var logLevel: Logger.Level { Logger.Level(rawValue: logLevelOption) ?? .info }
    var shutdownGrace: Duration { .seconds(shutdownGraceSeconds) }
    var store: StoreKind { StoreKind(rawValue: storeOption) ?? .sqlite }
    var eventRetention: EventLog.Retention {
        .init(count: eventRetentionCount, maxAge: .seconds(eventRetentionHours * 3600))
    }

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be from 0 to 65535") }
        guard taskWorkers >= 1 else { throw ValidationError("--task-workers must be at least 1") }
        guard queueLimit >= 0 else { throw ValidationError("--queue-limit must not be negative") }
        guard maxMessageBytes >= 256 else { throw ValidationError("--max-message-bytes must be at least 256") }
        guard shutdownGraceSeconds >= 0 else { throw ValidationError("--shutdown-grace must not be negative") }
        guard StoreKind(rawValue: storeOption) != nil else { throw ValidationError("--store must be sqlite or memory") }
        guard eventRetentionCount >= 1 else { throw ValidationError("--event-retention-count must be at least 1") }
        guard eventRetentionHours >= 1 else { throw ValidationError("--event-retention-hours must be at least 1") }
        guard Logger.Level(rawValue: logLevelOption) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
    }

    func run() async throws {
        do {
            try bootstrapLogging(directory: logDirectory, level: logLevel)
        } catch {
            throw ValidationError("cannot write logs under '\(logDirectoryOption)': \(error.localizedDescription)")
        }
        let app = try buildApplication(self)
        try await app.runService()
    }
}
