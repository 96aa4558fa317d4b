import CoreMetrics
import Synchronization
import Foundation
import Prometheus
import TaskGateCore

/// The server's metrics, in Prometheus text format on `GET /metrics`.
///
/// The metrics are made with swift-metrics' API against an explicit `PrometheusMetricsFactory` with its own
/// registry, not through the process-wide `MetricsSystem.bootstrap`: `buildApplication` can run several times in
/// one process (the tests do), and each application gets its own registry.
///
/// Counters are bumped where things happen (messages, store writes); gauges that mirror state the gateway already
/// keeps (connections, queue depth, tasks by status) are read when `/metrics` is scraped.
public final class GatewayMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory

    private let messagesIn: [Transport: CoreMetrics.Counter]
    private let messagesOut: [Transport: CoreMetrics.Counter]
    private let connections: [Transport: CoreMetrics.Gauge]
    private let tasksByStatus: [TaskStatus: CoreMetrics.Gauge]
    private let finishedByStatus: [TaskStatus: CoreMetrics.Gauge]
    private let queueDepth: CoreMetrics.Gauge
    private let longPollWaiters: CoreMetrics.Gauge
    private let taskDuration: CoreMetrics.Timer
    private let storeWrites: [String: CoreMetrics.Timer]
    private let waiting = Atomic<Int>(0)

    static let transports: [Transport] = [.webSocket, .longPoll, .sse]
    /// `claim` is a cluster node taking a queued task from the shared database.
    static let storeOperations = ["insert", "update", "append", "claim"]

    public init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = [
            "taskgate_task_duration_seconds": [
                .milliseconds(1), .milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(500),
                .seconds(1), .seconds(5), .seconds(30), .seconds(120), .seconds(600),
            ],
            "taskgate_store_write_seconds": [
                .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
                .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(50), .milliseconds(250),
            ],
        ]
        self.registry = registry
        self.factory = factory
        func perTransport<M>(_ make: (Transport) -> M) -> [Transport: M] {
            Dictionary(uniqueKeysWithValues: Self.transports.map { ($0, make($0)) })
        }
        messagesIn = perTransport {
            CoreMetrics.Counter(label: "taskgate_messages_in_total", dimensions: [("transport", $0.rawValue)], factory: factory)
        }
        messagesOut = perTransport {
            CoreMetrics.Counter(label: "taskgate_messages_out_total", dimensions: [("transport", $0.rawValue)], factory: factory)
        }
        connections = perTransport {
            CoreMetrics.Gauge(label: "taskgate_connections", dimensions: [("transport", $0.rawValue)], factory: factory)
        }
        tasksByStatus = Dictionary(uniqueKeysWithValues: [TaskStatus.queued, .running].map {
            ($0, CoreMetrics.Gauge(label: "taskgate_tasks", dimensions: [("status", $0.rawValue)], factory: factory))
        })
        finishedByStatus = Dictionary(uniqueKeysWithValues: TaskStatus.allCases.filter(\.isFinal).map {
            ($0, CoreMetrics.Gauge(label: "taskgate_tasks_finished", dimensions: [("status", $0.rawValue)], factory: factory))
        })
        queueDepth = CoreMetrics.Gauge(label: "taskgate_queue_depth", factory: factory)
        longPollWaiters = CoreMetrics.Gauge(label: "taskgate_longpoll_waiters", factory: factory)
        taskDuration = CoreMetrics.Timer(label: "taskgate_task_duration_seconds", factory: factory)
        storeWrites = Dictionary(uniqueKeysWithValues: Self.storeOperations.map {
            ($0, CoreMetrics.Timer(label: "taskgate_store_write_seconds", dimensions: [("op", $0)], factory: factory))
        })
        longPollWaiters.record(0)
    }

    func messageIn(_ transport: Transport, count: Int = 1) {
        messagesIn[transport]?.increment(by: count)
    }

    func messageOut(_ transport: Transport, count: Int = 1) {
        messagesOut[transport]?.increment(by: count)
    }

    func longPollStarted() {
        longPollWaiters.record(waiting.add(1, ordering: .relaxed).newValue)
    }

    func longPollEnded() {
        longPollWaiters.record(waiting.subtract(1, ordering: .relaxed).newValue)
    }

    func storeWrite(_ operation: String, took duration: Duration) {
        storeWrites[operation]?.recordNanoseconds(Self.nanoseconds(duration))
    }

    /// A task reached a final state: how long it ran (from its start, or from its submission if it never started).
    func taskFinished(_ task: TaskRecord) {
        guard task.status.isFinal, let finished = task.finishedAt else { return }
        let seconds = finished.timeIntervalSince(task.startedAt ?? task.createdAt)
        taskDuration.recordNanoseconds(Int64(max(0, seconds) * 1e9))
    }

    /// The Prometheus text exposition, with the state-mirroring gauges read from the gateway first.
    public func render(_ gateway: Gateway) async -> String {
        let counts = gateway.clients.countsByTransport()
        for (transport, gauge) in connections { gauge.record(counts[transport.rawValue] ?? 0) }
        let stats = await gateway.poolStats()
        queueDepth.record(stats.queued)
        tasksByStatus[.queued]?.record(stats.queued)
        tasksByStatus[.running]?.record(stats.running)
        for (status, gauge) in finishedByStatus { gauge.record(stats.finished[status.rawValue] ?? 0) }
        return registry.emitToString()
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
    }
}
