import Foundation
import Subprocess

#if canImport(Glibc)
import Glibc
#endif

/// A handler that starts a configured command per task: the task goes to its stdin as JSON, and it answers with
/// JSON lines on stdout (`{"progress":0.3}` any number of times, then `{"result":…}` or `{"error":…}`).
/// A non-zero exit or output that is not such lines fails the task with the first lines of stderr.
public struct CommandHandler: ConfiguredTaskHandler {
    public let name: String
    public let config: HandlerConfig
    private let limiter: ConcurrencyLimiter
    private let spec: ProcessSpec

    public init(name: String, config: HandlerConfig) {
        self.name = name
        self.config = config
        self.limiter = ConcurrencyLimiter(config.concurrency)
        self.spec = ProcessSpec(config)
    }

    public var summary: String { config.description ?? "runs `\(spec.displayName)` per task" }

    public func run(_ context: TaskContext) async throws -> JSONValue {
        await limiter.acquire()
        do {
            let result = try await runProcess(context)
            await limiter.release()
            return result
        } catch {
            await limiter.release()
            throw error
        }
    }

    private func runProcess(_ context: TaskContext) async throws -> JSONValue {
        try Task.checkCancellation()
        let input = TaskInput(id: context.taskID, cmd: name, uid: context.uid, args: context.argsText).line + "\n"
        let killer = ProcessGroupKiller()
        let stderr = StderrTail()
        let execution = try await withTaskCancellationHandler {
            try await Subprocess.run(
                spec.executable, arguments: spec.arguments, environment: spec.environmentUpdate(traceparent: context.traceparent),
                workingDirectory: spec.workingDirectory.map { .init($0) }, platformOptions: spec.platformOptions,
                input: .inputWriter, output: .sequence, error: .sequence
            ) { execution -> LineOutcome in
                killer.attach(execution.processIdentifier.value)
                return try await withThrowingTaskGroup(of: LineOutcome?.self) { group in
                    group.addTask {
                        for try await line in execution.standardError.strings() { await stderr.add(line) }
                        return nil
                    }
                    group.addTask {
                        _ = try await execution.standardInputWriter.write(input)
                        try await execution.standardInputWriter.finish()
                        return nil
                    }
                    group.addTask {
                        var outcome = LineOutcome.none
                        for try await line in execution.standardOutput.strings() {
                            let text = line.trimmingCharacters(in: .whitespacesAndNewlines)
                            if text.isEmpty { continue }
                            guard let parsed = HandlerOutputLine.parse(text) else {
                                outcome = .garbage(String(text.prefix(200)))
                                break
                            }
                            if let progress = parsed.progress { await context.reportProgress(progress) }
                            if let error = parsed.errorText {
                                outcome = .failed(error)
                            } else if parsed.hasResult {
                                outcome = .result(parsed.result ?? .null)
                            }
                        }
                        return outcome
                    }
                    var outcome = LineOutcome.none
                    for try await result in group {
                        if let result { outcome = result }
                    }
                    return outcome
                }
            }
        } onCancel: {
            killer.killGroup()
        }
        if killer.wasKilled { throw CancellationError() }
        let exit = execution.terminationStatus
        switch execution.closureResult {
        case .garbage(let line):
            throw TaskFailure("\(spec.displayName): output is not JSON lines: '\(line)'\(await stderr.summary)")
        case .failed(let message) where exit.isSuccess:
            throw TaskFailure(message)
        case .result(let value) where exit.isSuccess:
            return value
        case _ where !exit.isSuccess:
            throw TaskFailure("\(spec.displayName) \(exit.explained)\(await stderr.summary)")
        default:
            throw TaskFailure("\(spec.displayName) ended without a result or error line\(await stderr.summary)")
        }
    }
}

enum LineOutcome: Sendable {
    case none
    case result(JSONValue)
    case failed(String)
    case garbage(String)
}

extension TerminationStatus {
    var explained: String {
        switch self {
        case .exited(let code): "exited with status \(code)"
        case .signaled(let signal): "was killed by signal \(signal)"
        }
    }
}
