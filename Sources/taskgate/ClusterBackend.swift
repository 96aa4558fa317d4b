import Foundation
import Logging
import TaskGateCore
import TaskGatePostgres
import TaskGateServer

/// The composition root's one choice the server library leaves to it: `--store postgres` is a cluster node on the
/// PostgreSQL store; the other stores the library makes itself (`nil`).
func clusterBackend(_ settings: ServerSettings) throws -> TaskBackend? {
    guard settings.store == .postgres else { return nil }
    guard let text = settings.databaseURL, !text.isEmpty else {
        throw StartupError(description: "--store postgres needs --database-url postgres://user:password@host:5432/database")
    }
    let url: DatabaseURL
    do {
        url = try DatabaseURL(text)
    } catch {
        throw StartupError(description: "bad --database-url: \(error)")
    }
    let node = settings.nodeID ?? defaultNodeID(port: settings.port)
    guard PostgresTaskStore.isValidNodeID(node) else {
        throw StartupError(description: "--node-id must be 1-64 characters of A-Z a-z 0-9 . _ -")
    }
    var logger = Logger(label: "taskgate")
    logger.logLevel = settings.logLevel
    logger.info("cluster store", metadata: ["database": "\(url)", "node": .string(node)])
    return .cluster(PostgresTaskStore(url: url, nodeID: node, leaseTimeout: settings.leaseTimeout, logger: logger))
}

/// Host name and port: unique on one machine, and stable across restarts of the same node.
func defaultNodeID(port: Int) -> String {
    let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "node"
    let safe = String(host.unicodeScalars.filter { CharacterSet.alphanumerics.contains($0) || $0 == "-" })
    return "\(safe.isEmpty ? "node" : safe)-\(port)"
}
