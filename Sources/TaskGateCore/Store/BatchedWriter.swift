import Foundation
import GRDB
import Synchronization

/// One writer with group commit: writes that arrive while a transaction is being committed wait and go together
/// in the next one, so a burst of small writes costs one fsync, not one each. Each write runs in its own
/// savepoint, so one failing write does not undo the others; every caller resumes only after the commit.
///
/// A write that records what the server already promised (the state of an accepted task, its events) is not
/// given up when the disk is full or failing: it waits, first in line, and is tried again until it goes through,
/// while new tasks are refused. `problem` says why writes are failing, for `/healthz`.
///
/// The batches are written on a queue of the writer's own, with GRDB's blocking `write`, one after the other while
/// writes keep coming: an async `write` per batch hopped to GRDB's queue and back, and on two busy cores those
/// hops were two thirds of the writer's time (its transactions one third).
final class BatchedWriter: Sendable {
    private struct Item: Sendable {
        let body: @Sendable (Database) throws -> any Sendable
        let complete: @Sendable (Result<any Sendable, any Error>) -> Void
        let retriesUntilStored: Bool
    }

    private struct Queue {
        var items: [Item] = []
        var draining = false
    }

    private let database: DatabasePool
    private let queue = Mutex(Queue())
    private let drainQueue = DispatchQueue(label: "taskgate.store.writer")
    private struct Failure {
        var description: String
        var at: ContinuousClock.Instant
        /// Writes that must be stored are waiting for the disk.
        var waiting: Bool
    }
    private let failure = Mutex<Failure?>(nil)
    /// How long a failed write is news for `/healthz` when nothing is waiting to be written again.
    static let failureMemory = Duration.seconds(10)
    /// Caps a transaction, so one huge burst does not hold the write lock for long.
    private let maxBatch = 512

    /// Told of every commit, so that the log is copied back off this writer's thread.
    private let checkpointer: WALCheckpointer?

    init(database: DatabasePool, checkpointer: WALCheckpointer? = nil) {
        self.database = database
        self.checkpointer = checkpointer
    }

    /// Why writes are failing: while a write waits to be stored again, or for a few seconds after one failed;
    /// `nil` once one succeeds (or when nothing has failed lately).
    var problem: String? {
        failure.withLock { failure in
            guard let failure, failure.waiting || ContinuousClock.now - failure.at < Self.failureMemory else { return nil }
            return failure.description
        }
    }

    /// `retriesUntilStored`: a write the server must not lose waits out a full or failing disk instead of failing.
    func write<T: Sendable>(retriesUntilStored: Bool = false, _ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        let value = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<any Sendable, any Error>) in
            let item = Item(body: { try body($0) }, complete: { continuation.resume(with: $0) }, retriesUntilStored: retriesUntilStored)
            let startDraining = queue.withLock { queue -> Bool in
                queue.items.append(item)
                guard !queue.draining else { return false }
                queue.draining = true
                return true
            }
            if startDraining {
                drainQueue.async { self.drain() }
            }
        }
        // `body` returned a T, so the value is one.
        return value as! T
    }

    private func drain() {
        var backoff = Duration.milliseconds(100)
        while true {
            let batch = queue.withLock { queue -> [Item] in
                let batch = Array(queue.items.prefix(maxBatch))
                queue.items.removeFirst(batch.count)
                if batch.isEmpty { queue.draining = false }
                return batch
            }
            guard !batch.isEmpty else { return }
            var outcomes: [Result<any Sendable, any Error>]
            do {
                outcomes = try database.write { db in
                    // Usually every write goes through: one savepoint for them all (each statement that opens or
                    // releases one is compiled anew). When one fails, that savepoint is rolled back and each write
                    // runs again in its own, so that the failing one alone is left out.
                    if let values = try? Self.runTogether(batch, in: db) { return values.map { .success($0) } }
                    return batch.map { item in
                        Result<any Sendable, any Error> {
                            var value: (any Sendable)?
                            try db.inSavepoint {
                                value = try item.body(db)
                                return .commit
                            }
                            return value!
                        }
                    }
                }
                checkpointer?.committed()
            } catch {
                // The transaction itself failed (disk full, I/O error): nothing in it was written.
                outcomes = batch.map { _ in .failure(error) }
            }
            var again: [Item] = []
            var lastError: (any Error)?
            for (item, outcome) in zip(batch, outcomes) {
                if case .failure(let error) = outcome {
                    lastError = error
                    if item.retriesUntilStored && Self.isPassing(error) {
                        again.append(item)
                        continue
                    }
                }
                item.complete(outcome)
            }
            let waiting = !again.isEmpty
            failure.withLock { $0 = lastError.map { Failure(description: "\($0)", at: .now, waiting: waiting) } }
            if !again.isEmpty {
                // First in line again, in their order: a user's events are stored in seq order.
                queue.withLock { $0.items.insert(contentsOf: again, at: 0) }
                // Only writes waiting for the disk are held up here: the writer's own queue, not a shared thread.
                let (seconds, attoseconds) = backoff.components
                Thread.sleep(forTimeInterval: Double(seconds) + Double(attoseconds) / 1e18)
                backoff = min(backoff * 2, .seconds(2))
            } else {
                backoff = .milliseconds(100)
            }
        }
    }

    /// Every write of the batch in one savepoint; throws (having rolled it back) as soon as one fails.
    private static func runTogether(_ batch: [Item], in db: Database) throws -> [any Sendable] {
        var values: [any Sendable] = []
        values.reserveCapacity(batch.count)
        try db.inSavepoint {
            for item in batch { values.append(try item.body(db)) }
            return .commit
        }
        return values
    }

    /// Failures that go away by themselves: a full disk, an I/O error, a read-only remount, a busy database.
    static func isPassing(_ error: any Error) -> Bool {
        guard let error = error as? DatabaseError else { return false }
        switch error.resultCode.primaryResultCode {
        case .SQLITE_FULL, .SQLITE_IOERR, .SQLITE_READONLY, .SQLITE_BUSY, .SQLITE_LOCKED, .SQLITE_CANTOPEN: return true
        default: return false
        }
    }
}
