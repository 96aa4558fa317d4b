import GRDB
import Synchronization

/// One writer with group commit: writes that arrive while a transaction is being committed wait and go together
/// in the next one, so a burst of small writes costs one fsync, not one each. Each write runs in its own
/// savepoint, so one failing write does not undo the others; every caller resumes only after the commit.
final class BatchedWriter: Sendable {
    private struct Item: Sendable {
        let body: @Sendable (Database) throws -> any Sendable
        let complete: @Sendable (Result<any Sendable, any Error>) -> Void
    }

    private struct Queue {
        var items: [Item] = []
        var draining = false
    }

    private let database: DatabasePool
    private let queue = Mutex(Queue())
    /// Caps a transaction, so one huge burst does not hold the write lock for long.
    private let maxBatch = 512

    init(database: DatabasePool) {
        self.database = database
    }

    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        let value = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<any Sendable, any Error>) in
            let item = Item(body: { try body($0) }, complete: { continuation.resume(with: $0) })
            let startDraining = queue.withLock { queue -> Bool in
                queue.items.append(item)
                guard !queue.draining else { return false }
                queue.draining = true
                return true
            }
            if startDraining {
                Task { await self.drain() }
            }
        }
        // `body` returned a T, so the value is one.
        return value as! T
    }

    private func drain() async {
        while true {
            let batch = queue.withLock { queue -> [Item] in
                let batch = Array(queue.items.prefix(maxBatch))
                queue.items.removeFirst(batch.count)
                if batch.isEmpty { queue.draining = false }
                return batch
            }
            guard !batch.isEmpty else { return }
            do {
                let results = try await database.write { db in
                    batch.map { item in
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
                for (item, result) in zip(batch, results) { item.complete(result) }
            } catch {
                // The transaction itself failed (disk full, I/O error): nothing in it was written.
                for item in batch { item.complete(.failure(error)) }
            }
        }
    }
}
