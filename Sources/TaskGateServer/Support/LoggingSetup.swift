import Logging

/// Logs go to stdout and, when a directory is given, to `taskgate.log` in it. Called once, by the CLI.
public func bootstrapLogging(directory: String?, level: Logger.Level) throws {
    let fileFactory = try directory.map { try FileLogHandler.makeFactory(directory: $0) }
    LoggingSystem.bootstrap { label in
        var stdout = StreamLogHandler.standardOutput(label: label)
        stdout.logLevel = level
        guard let fileFactory else { return stdout }
        var file = fileFactory(label)
        file.logLevel = level
        return MultiplexLogHandler([stdout, file])
    }
}
