import Foundation
import Logging
import Tracing

/// Running one task: its handler on a worker thread, with its timeout, progress, cancel and retries.
extension TaskPool {
    /// Runs one claimed task (already running here, its attempt counted) to its end.
    func execute(_ job: Job) async {
        var record = job.record
        record.node = coordinator.nodeID ?? record.node
        record.progress = 0
        record.error = nil
        record.startedAt = Date()

        // The trace its submission started (kept in the record, so also after a restart or on another node).
        let tracer = InstrumentationSystem.tracer
        let submitted = TaskTracing.context(fromTraceparent: record.traceparent) ?? .topLevel
        let queuedSpan = tracer.startSpan(
            "task.queued", context: submitted, ofKind: .internal, at: TaskTracing.instant(record.createdAt))
        queuedSpan.attributes["taskgate.task.id"] = record.id
        queuedSpan.end()
        let runSpan = tracer.startSpan("task.run", context: submitted, ofKind: .internal)
        defer { runSpan.end() }
        runSpan.attributes["taskgate.task.id"] = record.id
        runSpan.attributes["taskgate.task.cmd"] = record.cmd
        runSpan.attributes["taskgate.task.attempt"] = record.attempts
        if let node = record.node { runSpan.attributes["taskgate.node"] = node }

        let tracker = ProgressTracker(record: record)
        let context = TaskContext(
            taskID: record.id, uid: record.uid, argsText: record.args, attempt: record.attempts,
            traceparent: TaskTracing.traceparent(of: runSpan.context)
        ) { fraction in
            await self.publishProgress(tracker.update(fraction))
        }
        // A task answered inline has nothing between its start and its end: its `progress` is stored with its
        // `done`, in one write (`finish(_:startedAs:)`; in a cluster one statement), unless it goes back to the queue.
        let started = record
        let inline = Self.runInline(job.handler, context: context)
        var startPending = inline != nil
        if !startPending { await publishProgress(record) }
        /// Publishes the start on its own where the task does not end now.
        func publishStart() async {
            if startPending {
                startPending = false
                await publishProgress(started)
            }
        }
        let outcome: Result<JSONText, any Error>
        if let inline {
            outcome = inline
        } else {
            outcome = await ServiceContext.withValue(runSpan.context) {
                await Self.run(job.handler, context: context, timeout: job.options.timeout, on: executor)
            }
        }
        record.progress = tracker.current.progress
        record.finishedAt = Date()
        let stopReason = running[record.id]?.stopReason
        await handlerReturned(record.id)
        if stopReason == .lost {
            logger.notice("task reclaimed by another node; this node's result is dropped", metadata: ["task": .string(record.id)])
            runSpan.setStatus(SpanStatus(code: .error, message: "reclaimed by another node"))
            await ended(record.id)
            return
        }
        switch outcome {
        case .failure(is ResultTooDeep):
            // Results are held to the limit args are held to (a value one level inside a message).
            record.status = .failed
            record.error = "the handler's result nests deeper than \(JSONLimits.maxDepth - 1) levels"
        case .success(let result):
            record.status = .succeeded
            record.progress = 1
            record.result = result
        case .failure(is TimeoutError):
            record.status = .timedOut
            record.error = "timed out after \(job.options.timeout.wholeMilliseconds) ms"
        case .failure(let error) where stopReason == .cancelled:
            record.status = .cancelled
            record.error = "cancelled"
            _ = error
        case .failure where stopReason == .shutdown:
            if store.isDurable && job.handler.isIdempotent && record.attempts < job.options.maxAttempts {
                record.status = .queued
                record.error = "interrupted by a shutdown; it runs again after the restart"
                record.finishedAt = nil
            } else {
                record.status = .failed
                record.error = "interrupted: the server shut down while the task was running"
            }
        case .failure(let error):
            record.status = .failed
            record.error = (error as? TaskFailure)?.message ?? "handler error: \(error)"
            // A retry returns below before the status is set at the end.
            runSpan.setStatus(SpanStatus(code: .error, message: record.error ?? "failed"))
            if record.attempts < job.options.maxAttempts && accepting {
                await publishStart()
                await retry(record)
                await ended(record.id)
                return
            }
        }
        if record.status != .succeeded {
            runSpan.setStatus(SpanStatus(code: .error, message: record.error ?? record.status.rawValue))
        }
        runSpan.attributes["taskgate.task.status"] = record.status.rawValue
        if record.status == .queued {
            await publishStart()
            await save(record)
        } else {
            // The `done` event, written with the task and sent to the owner's connections.
            let deliverSpan = tracer.startSpan("task.deliver", context: runSpan.context, ofKind: .internal)
            deliverSpan.attributes["taskgate.task.id"] = record.id
            await finish(record, startedAs: startPending ? started : nil)
            deliverSpan.end()
        }
        await ended(record.id)
    }

    /// A failed attempt with attempts left goes back to the queue (`queued` on record) and waits out its backoff
    /// there; in a cluster any node may claim it once it is due.
    func retry(_ failed: TaskRecord) async {
        var record = failed
        record.status = .queued
        record.finishedAt = nil
        let wait = TaskOptions.backoff(afterAttempt: record.attempts)
        let due = Date().addingTimeInterval(Double(wait.wholeMilliseconds) / 1000)
        await persist(record, notBefore: due)
        coordinator.enqueue(record, notBefore: due)
        logger.info("task failed, retrying", metadata: ["task": .string(record.id), "attempt": "\(record.attempts)", "delay": "\(wait)"])
    }

    struct TimeoutError: Error {}
    struct ResultTooDeep: Error {}

    /// A handler's result, written out once, here; or `ResultTooDeep`.
    private nonisolated static func text(of value: JSONValue) -> Result<JSONText, any Error> {
        value.fitsDepthLimit(at: 1) ? .success(JSONText(value)) : .failure(ResultTooDeep())
    }

    /// The outcome of a handler that answers inline (`TaskHandler.resultInline`), or `nil` for one that runs on the
    /// workers.
    private nonisolated static func runInline(_ handler: any TaskHandler, context: TaskContext) -> Result<JSONText, any Error>? {
        do {
            guard let result = try handler.resultInline(context) else { return nil }
            // The args' own text is within the limit; anything else is held to it as `run`'s results are (a
            // `JSONText` is compact already: checked, not written out again).
            if result.text == context.argsText.text { return .success(result) }
            guard let value = try? WireParser.parse(result.text.utf8), value.fitsDepthLimit(at: 1) else {
                return .failure(ResultTooDeep())
            }
            return .success(result)
        } catch {
            return .failure(error)
        }
    }

    /// Runs the handler on the worker threads, racing it against its timeout.
    private nonisolated static func run(
        _ handler: any TaskHandler, context: TaskContext, timeout: Duration, on executor: TaskWorkerExecutor
    ) async -> Result<JSONText, any Error> {
        await withTaskGroup(of: Result<JSONText, any Error>?.self) { group in
            group.addTask(executorPreference: executor) {
                // Written out on the worker's thread, not in the pool's turn.
                do { return text(of: try await handler.run(context)) } catch { return .failure(error) }
            }
            group.addTask {
                do {
                    try await Task.sleep(for: timeout)
                    return .failure(TimeoutError())
                } catch {
                    return nil  // cancelled because the handler finished first
                }
            }
            var outcome: Result<JSONText, any Error> = .failure(CancellationError())
            if let first = await group.next(), let result = first {
                outcome = result
            }
            group.cancelAll()
            return outcome
        }
    }
}
