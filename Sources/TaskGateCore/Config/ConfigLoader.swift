import Foundation

/// Reads and checks a config file. Everything wrong with it comes back as a `ConfigError` naming the file, the
/// line or key, and the problem.
public enum ConfigLoader {
    public static func load(path: String, reservedNames: Set<String> = []) throws(ConfigError) -> GatewayConfig {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ConfigError(file: path, location: "", problem: "cannot read the file (\(error.localizedDescription))")
        }
        return try parse(data, file: path, reservedNames: reservedNames)
    }

    public static func parse(_ data: Data, file: String, reservedNames: Set<String> = []) throws(ConfigError) -> GatewayConfig {
        // Checked first: Foundation's JSON5 reader traps on some invalid UTF-8 (an unquoted key starting 0xF8-0xFE).
        guard String(validating: data, as: UTF8.self) != nil else {
            throw ConfigError(file: file, location: "", problem: "the file is not valid UTF-8 text")
        }
        let decoder = JSONDecoder()
        // JSON5 allows comments and trailing commas, so the example config can explain itself.
        decoder.allowsJSON5 = true
        var config: GatewayConfig
        do {
            config = try decoder.decode(GatewayConfig.self, from: data)
        } catch var error as ConfigError {
            error.file = file
            throw error
        } catch let error as DecodingError {
            throw describe(error, file: file, data: data)
        } catch {
            throw ConfigError(file: file, location: "", problem: "\(error)")
        }
        for (name, handler) in config.handlers {
            guard name.utf8.count <= 64, Identifier.isValidTaskID(name) else {
                throw ConfigError(file: file, location: "handlers.\(name)", problem: "a handler name is 1-64 characters of A-Z a-z 0-9 . _ : -")
            }
            guard !reservedNames.contains(name) else {
                throw ConfigError(file: file, location: "handlers.\(name)", problem: "'\(name)' is already a built-in command or handler")
            }
            if let directory = handler.workingDirectory, !directory.hasPrefix("/") {
                // Relative to the config file, so the file works from any current directory.
                let base = URL(fileURLWithPath: file).deletingLastPathComponent()
                config.handlers[name]?.workingDirectory = base.appendingPathComponent(directory).standardized.path
            }
        }
        var scheduleNames = Set<String>()
        for (index, schedule) in config.schedules.enumerated() {
            let location = "schedules[\(index)]"
            guard scheduleNames.insert(schedule.name).inserted else {
                throw ConfigError(file: file, location: location + ".name", problem: "another schedule is already named '\(schedule.name)'")
            }
        }
        return config
    }

    static func describe(_ error: DecodingError, file: String, data: Data) -> ConfigError {
        switch error {
        case .keyNotFound(let key, let context):
            return ConfigError(file: file, location: ConfigError.keyPath(context.codingPath + [key]), problem: "missing")
        case .typeMismatch(let type, let context):
            return ConfigError(file: file, location: ConfigError.keyPath(context.codingPath), problem: "must be \(describe(type))")
        case .valueNotFound(let type, let context):
            return ConfigError(file: file, location: ConfigError.keyPath(context.codingPath), problem: "must be \(describe(type)), not null")
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty {
                // A syntax error: Foundation does not say where, so find it.
                if let failure = JSONSyntaxLocator.firstError(in: Array(data)) {
                    return ConfigError(file: file, location: "line \(failure.line), column \(failure.column)", problem: failure.problem)
                }
                return ConfigError(file: file, location: "", problem: "not valid JSON")
            }
            return ConfigError(file: file, location: ConfigError.keyPath(context.codingPath), problem: context.debugDescription)
        @unknown default:
            return ConfigError(file: file, location: "", problem: "\(error)")
        }
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type: "a whole number"
        case is Bool.Type: "true or false"
        case is [String].Type: "a list of strings"
        default: "a \(type)".replacingOccurrences(of: "Dictionary<String, ", with: "an object of ").replacingOccurrences(of: "Array<", with: "a list of ")
        }
    }
}
