import Foundation
import Logging
import Subprocess
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A handler served by a pool of long-lived worker processes (Swoole's task workers, without loading a
/// framework per task). Each process reads one task per line on stdin and answers with JSON lines on stdout that
/// carry the task `id`: progress any number of times, then a result or an error. A process serves tasks one at a
/// time, is replaced after `max_requests` tasks, and is restarted with a backoff when it crashes.
public final class WorkerPoolHandler: ConfiguredTaskHandler, RetirableHandler {
    public let name: String
    public let config: HandlerConfig
    private let pool: WorkerPool

    public init(name: String, config: HandlerConfig, logger: Logger) {
        self.name = name
        self.config = config
        self.pool = WorkerPool(name: name, spec: ProcessSpec(config), size: config.processes, maxRequests: config.maxRequests, logger: logger)
    }

    public var summary: String { config.description ?? "a pool of \(config.processes) `\(ProcessSpec(config).displayName)` workers" }

    public func run(_ context: TaskContext) async throws -> JSONValue {
        let worker = try await pool.acquire()
        let input = TaskInput(id: context.taskID, cmd: name, uid: context.uid, args: context.argsText, traceparent: context.traceparent).line
        do {
            let result = try await withTaskCancellationHandler {
                try await worker.perform(id: context.taskID, line: input) { await context.reportProgress($0) }
            } onCancel: {
                // A worker cannot be interrupted mid-task any other way; it is replaced.
                worker.kill()
            }
            await pool.release(worker)
            return result
        } catch {
            await pool.release(worker)
            if Task.isCancelled { throw CancellationError() }
            throw error
        }
    }

    /// After a reload replaced this handler: idle processes exit now, busy ones after their current task.
    public func retire() async {
        await pool.retire()
    }

    /// The pids of the live processes (for tests and `handlers` details).
    public var processIDs: [Int32] {
        get async { await pool.processIDs }
    }
}

/// A handler that owns resources (processes) to let go of once a reload has replaced it.
public protocol RetirableHandler: TaskHandler {
    func retire() async
}

actor WorkerPool {
    private let name: String
    private let spec: ProcessSpec
    private let size: Int
    private let maxRequests: Int
    private let logger: Logger
    private var idle: [WorkerProcess] = []
    private var live = 0
    private var waiters: [CheckedContinuation<WorkerProcess, any Error>] = []
    private var retired = false
    private var recentCrashes = 0
    private var all: [ObjectIdentifier: WorkerProcess] = [:]

    init(name: String, spec: ProcessSpec, size: Int, maxRequests: Int, logger: Logger) {
        self.name = name
        self.spec = spec
        self.size = size
        self.maxRequests = maxRequests
        self.logger = logger
    }

    var processIDs: [Int32] { all.values.compactMap(\.processID).sorted() }

    func acquire() async throws -> WorkerProcess {
        while let worker = idle.popLast() {
            if worker.isUsable { return worker }
            forget(worker)
        }
        if live < size {
            return try await spawn()
        }
        return try await withCheckedThrowingContinuation { waiters.append($0) }
    }

    func release(_ worker: WorkerProcess) async {
        if worker.crashed {
            recentCrashes += 1
            logger.warning("worker process crashed", metadata: ["handler": .string(name), "pid": "\(worker.processID ?? -1)"])
        } else {
            recentCrashes = 0
        }
        guard worker.isUsable, !retired else {
            worker.finish()
            forget(worker)
            await replaceForWaiters()
            return
        }
        if !waiters.isEmpty {
            waiters.removeFirst().resume(returning: worker)
        } else {
            idle.append(worker)
        }
    }

    func retire() {
        retired = true
        for worker in idle {
            worker.finish()
            forget(worker)
        }
        idle.removeAll()
    }

    private func forget(_ worker: WorkerProcess) {
        if all.removeValue(forKey: ObjectIdentifier(worker)) != nil { live -= 1 }
    }

    /// A process went away: start another for whoever is waiting, after a backoff if processes keep crashing.
    private func replaceForWaiters() async {
        guard !waiters.isEmpty, live < size else { return }
        if recentCrashes > 0 {
            try? await Task.sleep(for: TaskOptions.backoff(afterAttempt: recentCrashes))
        }
        guard !waiters.isEmpty, live < size else { return }
        do {
            let worker = try await spawn()
            waiters.removeFirst().resume(returning: worker)
        } catch {
            waiters.removeFirst().resume(throwing: error)
        }
    }

    private func spawn() async throws -> WorkerProcess {
        live += 1
        let worker = WorkerProcess(spec: spec, maxRequests: maxRequests, logger: logger)
        all[ObjectIdentifier(worker)] = worker
        do {
            try await worker.start()
        } catch {
            forget(worker)
            throw TaskFailure("could not start worker `\(spec.displayName)`: \(error)")
        }
        logger.info("worker process started", metadata: ["handler": .string(name), "pid": "\(worker.processID ?? -1)"])
        return worker
    }
}

/// One long-lived worker process. Requests go in one at a time; the process's run loop lives in a task that ends
/// when the process exits.
final class WorkerProcess: Sendable {
    private struct Request: Sendable {
        let id: String
        let line: String
        let progress: @Sendable (Double) async -> Void
        let reply: CheckedContinuation<JSONValue, any Error>
    }

    private struct State {
        var processID: Int32?
        var served = 0
        var exited = false
        var crashed = false
        var finishing = false
    }

    private let spec: ProcessSpec
    private let maxRequests: Int
    private let logger: Logger
    private let requests: AsyncStream<Request>
    private let requestSink: AsyncStream<Request>.Continuation
    private let state = Mutex(State())
    private let killer = ProcessGroupKiller()

    init(spec: ProcessSpec, maxRequests: Int, logger: Logger) {
        self.spec = spec
        self.maxRequests = maxRequests
        self.logger = logger
        (requests, requestSink) = AsyncStream<Request>.makeStream()
    }

    var processID: Int32? { state.withLock { $0.processID } }
    var crashed: Bool { state.withLock { $0.crashed } }
    var isUsable: Bool {
        state.withLock { !$0.exited && !$0.crashed && !$0.finishing && (maxRequests == 0 || $0.served < maxRequests) }
    }

    /// Starts the process; returns once it is running.
    func start() async throws {
        try await withCheckedThrowingContinuation { (started: CheckedContinuation<Void, any Error>) in
            Task {
                do {
                    let outcome = try await Subprocess.run(
                        spec.executable, arguments: spec.arguments, environment: spec.environmentUpdate,
                        workingDirectory: spec.workingDirectory.map { .init($0) }, platformOptions: spec.platformOptions,
                        input: .inputWriter, output: .sequence, error: .sequence
                    ) { execution in
                        let pid = execution.processIdentifier.value
                        killer.attach(pid)
                        state.withLock { $0.processID = pid }
                        started.resume()
                        try await serve(execution)
                    }
                    markExited(crashed: !outcome.terminationStatus.isSuccess && !state.withLock { $0.finishing })
                } catch {
                    if state.withLock({ $0.processID == nil }) {
                        started.resume(throwing: error)
                    }
                    markExited(crashed: true)
                }
            }
        }
    }

    private func serve(_ execution: Execution<CustomWriteInput, SequenceOutput, SequenceOutput>) async throws {
        let stderr = StderrTail(limit: 20)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for try await line in execution.standardError.strings() {
                    await stderr.add(line)
                    self.logger.debug("worker stderr", metadata: ["line": .string(line)])
                }
            }
            var lines = execution.standardOutput.strings().makeAsyncIterator()
            var pending = requests.makeAsyncIterator()
            while let request = await pending.next() {
                do {
                    _ = try await execution.standardInputWriter.write(request.line + "\n")
                } catch {
                    state.withLock { $0.crashed = true }
                    request.reply.resume(throwing: TaskFailure("worker `\(spec.displayName)` is gone: \(error)"))
                    break
                }
                var answered = false
                while !answered, let raw = try await lines.next() {
                    let text = raw.trimmingCharacters(in: .whitespacesAndNewlines)
                    if text.isEmpty { continue }
                    guard let parsed = HandlerOutputLine.parse(text), parsed.id == nil || parsed.id == request.id else {
                        // A worker that says something else cannot be trusted with the next task either.
                        state.withLock { $0.crashed = true }
                        request.reply.resume(throwing: TaskFailure("worker output is not a JSON line for task \(request.id): '\(text.prefix(200))'"))
                        answered = true
                        killer.killGroup()
                        break
                    }
                    if let progress = parsed.progress { await request.progress(progress) }
                    if let error = parsed.errorText {
                        request.reply.resume(throwing: TaskFailure(error))
                        answered = true
                    } else if parsed.hasResult {
                        request.reply.resume(returning: parsed.result ?? .null)
                        answered = true
                    }
                }
                if !answered {
                    // stdout closed mid-task: the process died.
                    state.withLock { $0.crashed = true }
                    let reason = killer.wasKilled ? "was stopped" : "crashed"
                    request.reply.resume(throwing: TaskFailure("worker `\(spec.displayName)` \(reason) during the task\(await stderr.summary)"))
                    break
                }
                let served = state.withLock { state in
                    state.served += 1
                    return state.served
                }
                if maxRequests > 0 && served >= maxRequests { break }
                if state.withLock({ $0.crashed || $0.finishing }) { break }
            }
            // No more tasks for this process: whatever raced in gets an error (the pool retries elsewhere).
            requestSink.finish()
            while let late = await pending.next() {
                late.reply.resume(throwing: TaskFailure("worker `\(spec.displayName)` has exited"))
            }
            // Closing stdin tells the worker to exit.
            try? await execution.standardInputWriter.finish()
            group.cancelAll()
        }
    }

    private func markExited(crashed: Bool) {
        state.withLock { state in
            state.exited = true
            if crashed { state.crashed = true }
        }
        requestSink.finish()
    }

    /// Runs one task on this process.
    func perform(id: String, line: String, progress: @escaping @Sendable (Double) async -> Void) async throws -> JSONValue {
        try await withCheckedThrowingContinuation { continuation in
            let request = Request(id: id, line: line, progress: progress, reply: continuation)
            if case .terminated = requestSink.yield(request) {
                continuation.resume(throwing: TaskFailure("worker `\(spec.displayName)` has exited"))
            }
        }
    }

    /// Lets the process finish: it exits once it sees the end of its stdin.
    func finish() {
        state.withLock { $0.finishing = true }
        requestSink.finish()
    }

    func kill() {
        state.withLock { $0.crashed = true }
        killer.killGroup()
    }
}
