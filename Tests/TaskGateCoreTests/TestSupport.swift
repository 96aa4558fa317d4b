import Foundation
import Logging
import Synchronization

@testable import TaskGateCore

/// A connection that records what it is sent, decoded for assertions.
final class RecordingConnection: ClientConnection {
    let id: String
    private let received = Mutex<[String]>([])
    private let closed = Mutex<CloseReason?>(nil)

    init(id: String = UUID().uuidString) { self.id = id }

    func send(_ message: OutgoingMessage) { received.withLock { $0.append(message.json) } }
    func close(reason: CloseReason) { closed.withLock { $0 = reason } }

    var texts: [String] { received.withLock { $0 } }
    var messages: [[String: Any]] {
        texts.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }
    var types: [String] { messages.compactMap { $0["type"] as? String } }
    var seqs: [Int] { messages.compactMap { $0["seq"] as? Int } }

    /// Waits (bounded) until `condition` holds for the received messages.
    func waitFor(timeout: Duration = .seconds(5), _ condition: ([[String: Any]]) -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition(messages) {
            guard ContinuousClock.now < deadline else { throw TimedOut() }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}

struct TimedOut: Error {}

extension Gateway {
    /// Waits (bounded) until the task is final.
    func finished(_ id: String, timeout: Duration = .seconds(10)) async throws -> TaskRecord {
        let deadline = ContinuousClock.now + timeout
        while true {
            let task = try await self.task(id: id, visibleTo: nil)
            if task.status.isFinal { return task }
            guard ContinuousClock.now < deadline else { throw TimedOut() }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    static func forTests(
        workers: Int = 2, queueLimit: Int = 100, store: any LocalTaskStore = InMemoryTaskStore(), fairShare: Bool = true,
        registry: any HandlerRegistry = SwiftHandlerRegistry()
    ) -> Gateway {
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        return Gateway(
            configuration: .init(pool: .init(workers: workers, queueLimit: queueLimit, fairShare: fairShare)), store: store,
            registry: registry, logger: logger)
    }
}


func temporaryDatabasePath() -> String {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("taskgate-tests-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return directory.appendingPathComponent("taskgate.sqlite").path
}
