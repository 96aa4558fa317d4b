import Foundation
import Logging
import Synchronization
import Tracing

/// The whole domain behind one front: the store, the handler registry, the pool, the event logs and the client
/// directory. Every front door (WebSocket, long-poll, REST, CLI via REST) goes through it, so they share one pool.
public final class Gateway: Sendable {
    public struct Configuration: Sendable {
        public var pool: TaskPool.Configuration
        public var eventRetention: EventLog.Retention
        public var maxArgsBytes: Int
        public var taskRetention: TaskRetention

        public init(
            pool: TaskPool.Configuration = .init(), eventRetention: EventLog.Retention = .init(), maxArgsBytes: Int = 64 * 1024,
            taskRetention: TaskRetention = .init()
        ) {
            self.pool = pool
            self.eventRetention = eventRetention
            self.maxArgsBytes = maxArgsBytes
            self.taskRetention = taskRetention
        }
    }

    public let backend: TaskBackend
    public let store: any TaskStore
    /// Set when this node is one of several sharing the store.
    public let shared: (any SharedTaskStore)?
    public let registry: any HandlerRegistry
    public let events: EventLog
    public let pool: TaskPool
    public let clients: ClientDirectory
    public let configuration: Configuration
    public let startedAt = ContinuousClock.now
    /// A cluster's queued tasks by handler, as the database last said (refreshed every second), so that `/healthz`
    /// and the stats never wait for the database.
    let clusterQueue = Mutex<[String: Int]?>(nil)
    let retentionReport = Mutex(RetentionReport())
    let logger: Logger
    /// What else a reload reads again before the handlers (the server's token keys); if it fails, nothing changes.
    let reloadFirst: (@Sendable () async throws -> Void)?

    public init(
        configuration: Configuration = .init(),
        backend: TaskBackend = .local(InMemoryTaskStore()),
        registry: any HandlerRegistry = SwiftHandlerRegistry(),
        logger: Logger = Logger(label: "taskgate"),
        reloadFirst: (@Sendable () async throws -> Void)? = nil
    ) {
        self.reloadFirst = reloadFirst
        self.configuration = configuration
        self.backend = backend
        self.store = backend.store
        if case .cluster(let shared) = backend { self.shared = shared } else { self.shared = nil }
        self.registry = registry
        self.events = EventLog(retention: configuration.eventRetention, backend: backend)
        self.pool = TaskPool(
            configuration: configuration.pool, backend: backend, events: events, handlers: { [registry] in registry.current },
            logger: logger)
        self.clients = ClientDirectory(node: shared?.nodeID)
        self.logger = logger
    }

    /// A single node on `store`.
    public convenience init(
        configuration: Configuration = .init(), store: any LocalTaskStore, registry: any HandlerRegistry = SwiftHandlerRegistry(),
        logger: Logger = Logger(label: "taskgate"), reloadFirst: (@Sendable () async throws -> Void)? = nil
    ) {
        self.init(configuration: configuration, backend: .local(store), registry: registry, logger: logger, reloadFirst: reloadFirst)
    }

    // MARK: - Tasks

    public struct Submission: Sendable {
        public var task: TaskRecord
        public var duplicate: Bool
    }

    /// Validates, stores and queues a task. The task is on record before `accepted` is called (and before this
    /// returns), so a `202` is never a promise the server could forget; `accepted` runs before the task can start.
    ///
    /// It runs in a `task.submit` span: a child of `traceparent` when the message carried a valid one (a WebSocket
    /// message's field), else of `ServiceContext.current` (the HTTP request's span). The task keeps that span's
    /// `traceparent` (when a tracer is on), so its run joins the same trace.
    ///
    /// `privileged`: the admin (REST, an admin connection, a recurring schedule), who may raise a task's priority
    /// above its handler's default; `schedule` names the recurring schedule that submits it.
    @discardableResult
    public func submit(
        cmd: String, args: [String: JSONValue], uid: String?, taskID: String? = nil, traceparent: String? = nil,
        privileged: Bool = true, schedule: String? = nil, accepted: (Submission) -> Void = { _ in }
    ) async throws(GatewayError) -> Submission {
        try await submit(
            cmd: cmd, submitted: .parsed(args), uid: uid, taskID: taskID, traceparent: traceparent, privileged: privileged,
            schedule: schedule, accepted: accepted)
    }

    /// The same, with the args as the client wrote them (`ClientMessage.argsText`): the task keeps that text, and
    /// the server reads only its options (`id`, `timeout_ms`, …) out of it, unless the handler validates its args.
    @discardableResult
    public func submit(
        cmd: String, argsText: JSONText, uid: String?, traceparent: String? = nil, privileged: Bool = true,
        accepted: (Submission) -> Void = { _ in }
    ) async throws(GatewayError) -> Submission {
        try await submit(
            cmd: cmd, submitted: .text(argsText), uid: uid, taskID: nil, traceparent: traceparent, privileged: privileged,
            schedule: nil, accepted: accepted)
    }

    /// A task's args as they reach the gateway: parsed (REST, schedules, code), or as text off the wire.
    private enum SubmittedArgs {
        case parsed([String: JSONValue])
        case text(JSONText)
    }


    private func submit(
        cmd: String, submitted args: SubmittedArgs, uid: String?, taskID: String?, traceparent: String?,
        privileged: Bool, schedule: String?, accepted: (Submission) -> Void
    ) async throws(GatewayError) -> Submission {
        let parent = TaskTracing.context(fromTraceparent: traceparent) ?? ServiceContext.current ?? .topLevel
        let span = InstrumentationSystem.tracer.startSpan("task.submit", context: parent, ofKind: .internal)
        defer { span.end() }
        span.attributes["taskgate.task.cmd"] = cmd
        if let uid { span.attributes["taskgate.uid"] = uid }
        do {
            let submission = try await submitTask(
                cmd: cmd, args: args, uid: uid, taskID: taskID, traceparent: TaskTracing.traceparent(of: span.context),
                privileged: privileged, schedule: schedule, accepted: accepted)
            span.attributes["taskgate.task.id"] = submission.task.id
            return submission
        } catch {
            span.recordError(error)
            span.setStatus(SpanStatus(code: .error, message: error.info))
            throw error
        }
    }

    private func submitTask(
        cmd: String, args submitted: SubmittedArgs, uid: String?, taskID: String?, traceparent: String?,
        privileged: Bool, schedule: String?, accepted: (Submission) -> Void
    ) async throws(GatewayError) -> Submission {
        let table = registry.current
        guard let handler = table.handler(named: cmd) else { throw .unknownCommand(cmd) }
        // `args` here: what the gateway reads of them. The args are written out once, here, unless the client's
        // own text is kept; nothing after this re-encodes them.
        let args: [String: JSONValue]
        let text: JSONText
        switch submitted {
        case .parsed(let parsed):
            // As deep as a client message's args may be, whichever front door (REST bodies are read by JSONDecoder).
            guard JSONValue.object(parsed).fitsDepthLimit(at: 1) else {
                throw .badRequest("'args' nests deeper than \(JSONLimits.maxDepth - 1) levels")
            }
            args = parsed
            text = .object(parsed)
        case .text(let given):
            // Checked by the parser, its depth included.
            args = given.members(named: ReservedArguments.names)
            text = given
        }
        // `args.id` is checked even when the REST body names the id: whatever a task carries is valid.
        let argsID = try Self.clientTaskID(in: args)
        let chosenID = taskID ?? argsID
        for given in [taskID, argsID].compactMap({ $0 }) where !Identifier.isValidTaskID(given) {
            throw .badRequest("task id must be 1-128 characters of A-Z a-z 0-9 . _ : -")
        }
        let id = chosenID.map { Self.scopedTaskID($0, uid: uid) } ?? Self.makeTaskID()
        _ = try TaskOptions(args: args, handler: handler)  // refuses bad options before anything is stored
        let scheduling = try TaskScheduling(args: args, handler: handler, mayRaisePriority: privileged)
        if handler.validatesArgs {
            switch submitted {
            case .parsed(let parsed): try handler.validate(parsed)
            case .text(let given): try handler.validate(given.objectValue ?? [:])
            }
        }
        guard text.text.utf8.count <= configuration.maxArgsBytes else {
            throw GatewayError(.tooLarge, "'args' is larger than \(configuration.maxArgsBytes) bytes")
        }

        let record = TaskRecord(
            id: id, cmd: cmd, uid: uid, args: text, status: scheduling.runAt == nil ? .queued : .scheduled,
            traceparent: traceparent, priority: scheduling.priority, runAt: scheduling.runAt, schedule: schedule)
        let outcome = try await pool.admit(record)
        switch outcome {
        case .existing(let existing):
            // The scoped id names this uid's task: the existing one is the same request again.
            let submission = Submission(task: existing, duplicate: true)
            accepted(submission)
            return submission
        case .inserted:
            let submission = Submission(task: record, duplicate: false)
            accepted(submission)
            await pool.enqueue(record)
            logger.debug("task submitted", metadata: ["task": .string(id), "cmd": .string(cmd)])
            return submission
        }
    }

    /// A task, only if `uid` may see it (`nil` uid: the admin, who sees every task).
    public func task(id: String, visibleTo uid: String?) async throws(GatewayError) -> TaskRecord {
        // A task is named by the id its owner gave it (stored scoped by uid), or by its full id.
        let candidates = Identifier.isValidTaskID(id) ? [Self.scopedTaskID(id, uid: uid), id] : [id]
        do {
            for candidate in candidates {
                if let record = try await store.task(id: candidate), uid == nil || record.uid == uid { return record }
            }
        } catch {
            throw storeFailure("the task store could not be read")
        }
        throw .taskNotFound(id)
    }

    public func list(_ query: TaskQuery) async throws(GatewayError) -> [TaskRecord] {
        do {
            return try await store.list(query)
        } catch {
            throw storeFailure("the task store could not be read")
        }
    }

    /// Cancels a queued or running task. Returns the task as it is now; its `done` event follows.
    public func cancel(id: String, visibleTo uid: String?) async throws(GatewayError) -> TaskRecord {
        let record = try await task(id: id, visibleTo: uid)
        if record.status.isFinal {
            throw GatewayError(.alreadyFinished, "task '\(id)' already finished (\(record.status.rawValue))")
        }
        switch await pool.cancel(id: record.id) {
        case .dequeued(let cancelled):
            return cancelled
        case .stopping:
            return try await task(id: id, visibleTo: uid)
        case .notActive:
            // It finished between the read and the cancel.
            let latest = try await task(id: id, visibleTo: uid)
            throw GatewayError(.alreadyFinished, "task '\(id)' already finished (\(latest.status.rawValue))")
        }
    }

    /// Soft reload: a new handler table for new tasks; running tasks finish on the one they started with and
    /// connections are untouched.
    public func reload() async throws(GatewayError) -> ReloadResult {
        do {
            try await reloadFirst?()
            let result = try await registry.reload()
            logger.notice(
                "handlers reloaded",
                metadata: [
                    "generation": "\(result.table.generation)", "added": "\(result.added)", "changed": "\(result.changed)",
                    "removed": "\(result.removed)",
                ])
            return result
        } catch {
            logger.error("reload refused", metadata: ["error": "\(error)"])
            throw GatewayError(.badRequest, "reload refused, the previous handlers stay in force: \(error)")
        }
    }

    /// Picks up what a previous run left: queued tasks queue again, interrupted ones are retried or failed.
    public func recover() async throws {
        let (requeued, failed) = try await pool.recover(handlers: registry.current)
        guard requeued + failed > 0 else { return }
        logger.notice("recovered unfinished tasks", metadata: ["requeued": "\(requeued)", "failed": "\(failed)"])
    }

    public func shutdown(grace: Duration) async {
        await pool.shutdown(grace: grace)
        await registry.shutdown()
    }

    // MARK: - Helpers

    /// A shared database that went away is a passing state (503), a local store that fails a server fault (500).
    func storeFailure(_ info: String) -> GatewayError {
        GatewayError(shared == nil ? .internalError : .unavailable, info)
    }

    static func clientTaskID(in args: [String: JSONValue]) throws(GatewayError) -> String? {
        switch args["id"] {
        case nil, .null?: return nil
        case .string(let id)?: return id
        // Swoole-era clients send numeric business ids.
        case .number?:
            if let number = args["id"]?.intValue, number >= 0 { return String(number) }
            throw .badRequest("'args.id' must be a string or a non-negative whole number")
        default: throw .badRequest("'args.id' must be a string")
        }
    }

    /// Client-given ids are the client's own namespace: the same id from two uids makes two tasks, and no uid can
    /// learn of, or take, another's ids (nor a generated `t-…` one: a uid-less task's is `~id`). `~` is in neither
    /// alphabet, so the scoped id is unambiguous.
    static func scopedTaskID(_ id: String, uid: String?) -> String {
        "\(uid ?? "")~\(id)"
    }

    /// `t-` and 16 base-36 digits from two random 64-bit numbers: two reads of the system's generator, where a
    /// draw per digit made id generation 6 % of an echo task's CPU.
    static func makeTaskID() -> String {
        var generator = SystemRandomNumberGenerator()
        var id: [UInt8] = [UInt8(ascii: "t"), UInt8(ascii: "-")]
        id.reserveCapacity(18)
        for _ in 0..<2 {
            // 8 digits of each: 36^8 ≈ 2^41, so the digits of a 64-bit number are as good as uniform.
            var random = generator.next() as UInt64
            for _ in 0..<8 {
                id.append(idDigits[Int(random % 36)])
                random /= 36
            }
        }
        return String(decoding: id, as: UTF8.self)
    }

    private static let idDigits = Array("0123456789abcdefghijklmnopqrstuvwxyz".utf8)
}
