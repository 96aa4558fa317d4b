import ArgumentParser
import Foundation
import Logging
import TaskGateCore
import TaskGateServer

/// `taskgate serve`: the settings are the server's table (`ServerSettings.table`); each comes from, in order, its
/// flag, its `TASKGATE_*` variable, the config file's `server` section, or its default.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the server (WebSocket, SSE, long-poll, REST admin and demo page on one port).",
        discussion: """
            Every setting comes from, in order: its flag, its TASKGATE_* variable, the config file's "server" section \
            (the setting's name in snake_case, e.g. "task_workers"), or its default.

            SETTINGS:
            \(ServerSettings.helpText)
            """,
        aliases: ["start"]
    )

    @Option(help: "Config file with server options and handlers (default: $TASKGATE_CONFIG; none: built-ins only).")
    var config: String?

    @Flag(name: .customLong("settings-table"), help: .hidden)
    var printSettingsTable = false

    @Argument(parsing: .allUnrecognized, help: ArgumentHelp("Settings, listed below.", valueName: "setting"))
    var settings: [String] = []

    func run() async throws {
        if printSettingsTable {
            print(ServerSettings.markdownTable)
            return
        }
        let environment = ProcessInfo.processInfo.environment
        let configPath = config ?? environment["TASKGATE_CONFIG"].flatMap { $0.isEmpty ? nil : $0 }
        var file: [String: [String]] = [:]
        if let configPath {
            do {
                file = try ConfigLoader.load(path: configPath).server.options
            } catch {
                throw CLIError(description: "bad config: \(error)")
            }
        }
        var settings: ServerSettings
        do {
            settings = try ServerSettings.read(
                arguments: self.settings, environment: environment, file: file, fileName: configPath ?? "the config file")
        } catch {
            throw ValidationError(error.description)
        }
        settings.configPath = configPath
        do {
            try bootstrapLogging(directory: settings.logDirectory, level: settings.logLevel)
        } catch {
            throw CLIError(description: "cannot write logs under '\(settings.logDirectory ?? "")': \(error.localizedDescription)")
        }
        OpenFileLimit.raiseToHardLimit()
        try await buildServer(settings, backend: try clusterBackend(settings)).run()
    }
}
