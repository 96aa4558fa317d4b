import Foundation
import Subprocess
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What an external handler is given: the task, as one JSON object on one line (`line`), its args the client's
/// own text. Sorted keys; `uid` and `traceparent` are left out when absent.
struct TaskInput {
    var id: String
    var cmd: String
    var uid: String?
    var args: JSONText
    /// Only in a worker's task line, and only when tracing is on (absent otherwise).
    var traceparent: String? = nil

    var line: String {
        var writer = WireWriter(capacity: args.text.utf8.count + 128)
        writer.write(self)
        return writer.string
    }
}

extension WireWriter {
    mutating func write(_ input: TaskInput) {
        var object = beginObject()
        key("args", &object); write(text: input.args)
        key("cmd", &object); write(string: input.cmd)
        key("id", &object); write(string: input.id)
        if let traceparent = input.traceparent { key("traceparent", &object); write(string: traceparent) }
        if let uid = input.uid { key("uid", &object); write(string: uid) }
        endObject()
    }
}

/// One line an external handler writes to stdout. Progress lines come any number of times; a result or an error
/// line ends the task. Worker processes also echo the task `id`, since one process serves many tasks.
struct HandlerOutputLine: Decodable {
    var id: String?
    var progress: Double?
    var message: String?
    var result: JSONValue?
    var error: JSONValue?
    var hasResult: Bool

    enum CodingKeys: String, CodingKey { case id, progress, message, result, error }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decodeIfPresent(String.self, forKey: .id)
        progress = try container.decodeIfPresent(Double.self, forKey: .progress)
        message = try container.decodeIfPresent(String.self, forKey: .message)
        hasResult = container.contains(.result)
        result = try container.decodeIfPresent(JSONValue.self, forKey: .result)
        error = try container.decodeIfPresent(JSONValue.self, forKey: .error)
    }

    static func parse(_ line: String) -> HandlerOutputLine? {
        guard let parsed = try? JSONDecoder().decode(HandlerOutputLine.self, from: Data(line.utf8)) else { return nil }
        guard parsed.progress != nil || parsed.hasResult || parsed.error != nil else { return nil }
        return parsed
    }

    var errorText: String? {
        switch error {
        case nil, .null?: nil
        case .string(let text)?: text
        case let other?: WireJSON.encode(other)
        }
    }
}

/// How to start a configured handler's process.
struct ProcessSpec: Sendable {
    var command: [String]
    var workingDirectory: String?
    var environment: [String: String]

    init(_ config: HandlerConfig) {
        command = config.command
        workingDirectory = config.workingDirectory
        environment = config.environment
    }

    var executable: Executable {
        let first = command[0]
        guard first.contains("/") else { return .name(first) }
        if first.hasPrefix("/") { return .path(.init(first)) }
        let base = workingDirectory ?? FileManager.default.currentDirectoryPath
        return .path(.init(URL(fileURLWithPath: base).appendingPathComponent(first).standardized.path))
    }

    var arguments: Arguments { Arguments(Array(command.dropFirst())) }

    var environmentUpdate: Environment { environmentUpdate(traceparent: nil) }

    /// The configured environment, plus `TRACEPARENT` for a traced task's own process.
    func environmentUpdate(traceparent: String?) -> Environment {
        var update = Dictionary(uniqueKeysWithValues: environment.map { (Environment.Key(stringLiteral: $0.key), Optional($0.value)) })
        if let traceparent { update[Environment.Key(stringLiteral: "TRACEPARENT")] = traceparent }
        return .inherit.updating(update)
    }

    /// Each process leads its own process group, so a timeout or cancel kills whatever it started too.
    var platformOptions: PlatformOptions {
        var options = PlatformOptions()
        options.processGroupID = 0
        return options
    }

    var displayName: String { command.joined(separator: " ") }
}

/// The process group to kill when a task is cancelled or times out; set once the process exists.
final class ProcessGroupKiller: Sendable {
    private let pid = Mutex<pid_t?>(nil)
    private let killed = Mutex(false)

    func attach(_ processID: pid_t) {
        let alreadyKilled = killed.withLock { $0 }
        pid.withLock { $0 = processID }
        if alreadyKilled { kill(-processID, SIGKILL) }
    }

    func killGroup() {
        killed.withLock { $0 = true }
        if let processID = pid.withLock({ $0 }) { kill(-processID, SIGKILL) }
    }

    var wasKilled: Bool { killed.withLock { $0 } }
}

/// Keeps the first lines of a process's stderr: enough to explain a failure, bounded whatever it writes.
actor StderrTail {
    private(set) var lines: [String] = []
    let limit: Int
    init(limit: Int = 10) { self.limit = limit }
    func add(_ line: String) {
        if lines.count < limit { lines.append(String(line.prefix(500))) }
    }
    var summary: String { lines.isEmpty ? "" : ": " + lines.joined(separator: " | ") }
}

/// Limits how many tasks of one handler run at once (the handler's `concurrency`).
actor ConcurrencyLimiter {
    private var available: Int
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(_ permits: Int) { available = permits }

    func acquire() async {
        if available > 0 {
            available -= 1
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty {
            available += 1
        } else {
            waiters.removeFirst().resume()
        }
    }
}
