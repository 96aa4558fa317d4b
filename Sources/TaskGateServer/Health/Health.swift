import Foundation
import Hummingbird
import TaskGateCore

/// `GET /healthz`: `503` with `unhealthy` while a cluster node cannot reach its database, or while the store's
/// writes fail (a full disk: accepted tasks wait to be recorded, new ones are refused).
struct Health: Encodable {
    var status: String
    var uptimeSeconds: Double
    var connections: Int
    var queued: Int
    var running: Int
    var generation: Int
    var node: String
    var store: String
    var database: String
    var retention: Retention

    /// Task retention's settings and what its last run did.
    struct Retention: Encodable {
        var maxAgeHours: Double?
        var count: Int?
        var lastRun: Date?
        var lastPruned: Int
        var totalPruned: Int
        var lastError: String?

        // `nil` fields are written as `null`, as everywhere on the wire.
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(all: [
                .maxAgeHours: maxAgeHours, .count: count, .lastRun: lastRun, .lastPruned: lastPruned,
                .totalPruned: totalPruned, .lastError: lastError
            ])
        }
        enum CodingKeys: String, CodingKey { case maxAgeHours, count, lastRun, lastPruned, totalPruned, lastError }
    }

    var isHealthy: Bool { status == "ok" }

    static func current(_ gateway: Gateway) async -> Health {
        let uptime = ContinuousClock.now - gateway.startedAt
        let reachable = gateway.shared?.isReachable ?? true
        let writeProblem = gateway.store.writeProblem
        let store = gateway.shared != nil ? "postgres" : gateway.store.isDurable ? "sqlite" : "memory"
        let report = gateway.lastRetentionReport
        return Health(
            status: reachable && writeProblem == nil ? "ok" : "unhealthy",
            uptimeSeconds: Double(uptime.components.seconds) + Double(uptime.components.attoseconds) / 1e18,
            connections: gateway.clients.count,
            queued: await gateway.poolStats().queued,
            running: await gateway.pool.runningCount,
            generation: gateway.registry.current.generation,
            node: gateway.nodeID ?? Gateway.standaloneNodeID,
            store: store,
            database: !reachable ? "unreachable" : writeProblem == nil ? "ok" : "writes failing: \(writeProblem!)",
            retention: Retention(
                maxAgeHours: gateway.configuration.taskRetention.maxAge.map { Double($0.wholeMilliseconds) / 3_600_000 },
                count: gateway.configuration.taskRetention.count, lastRun: report.lastRun, lastPruned: report.lastPruned,
                totalPruned: report.totalPruned, lastError: report.lastError)
        )
    }
}

extension Health {
    static func addRoute(to router: Router<GatewayRequestContext>, gateway: Gateway) {
        router.get("/healthz") { _, _ -> Response in
            let health = await Health.current(gateway)
            return .json(health, status: health.isHealthy ? .ok : .serviceUnavailable)
        }
    }
}
