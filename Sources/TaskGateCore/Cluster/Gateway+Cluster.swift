import Foundation

/// What a node adds when it shares its store with other nodes: heartbeats, claiming and reclaiming tasks, other
/// nodes' events and requests, and cluster-wide client lists and reloads. On a single node these answer for it alone.
extension Gateway {
    /// This node's id in a cluster; `nil` on a single node.
    public var nodeID: String? { shared?.nodeID }

    /// How a single node names itself where a node id is asked for.
    public static let standaloneNodeID = "local"

    /// The clients of every node: this node's as they are, the others' as they last published them. Without the
    /// database only this node's are listed.
    public func allClients() async -> [ClientInfo] {
        let local = clients.list()
        guard let shared, let nodes = try? await shared.liveNodes() else { return local }
        let remote = nodes.filter { $0.id != shared.nodeID }.flatMap(\.clients)
        return (local + remote).sorted { ($0.connectedAt, $0.node ?? "", $0.id) < ($1.connectedAt, $1.node ?? "", $1.id) }
    }

    /// The pool's figures. In a cluster tasks wait in the database, not in a node's pool, so `queued` (in all and
    /// per handler) is the cluster's as last read (at most a second or so old); `running` stays this node's.
    public func poolStats() async -> TaskPool.Stats {
        var stats = await pool.stats
        guard let queued = clusterQueue.withLock({ $0 }) else { return stats }
        stats.queued = queued.values.reduce(0, +)
        for name in stats.handlers.keys { stats.handlers[name]?.queued = 0 }
        for (name, count) in queued { stats.handlers[name, default: .init()].queued = count }
        return stats
    }

    public struct NodeSummary: Sendable, Codable {
        public var id: String
        public var `self`: Bool
        public var startedAt: Date
        public var heartbeatAt: Date
        public var clients: Int
        public var running: Int
    }

    /// The live nodes (heartbeat within the lease); a single node lists itself.
    public func nodes() async throws(GatewayError) -> [NodeSummary] {
        guard let shared else {
            return [
                NodeSummary(
                    id: Self.standaloneNodeID, self: true, startedAt: startedAtDate, heartbeatAt: Date(), clients: clients.count,
                    running: await pool.runningCount)
            ]
        }
        do {
            return try await shared.liveNodes().map {
                NodeSummary(
                    id: $0.id, self: $0.id == shared.nodeID, startedAt: $0.startedAt, heartbeatAt: $0.heartbeatAt,
                    clients: $0.clients.count, running: $0.running)
            }
        } catch {
            throw GatewayError.databaseUnreachable
        }
    }

    /// Reloads the handlers of one node, or (`nil`) of every live node, and collects each node's answer. A refusal
    /// of every targeted node is an error, as on a single node; otherwise each answer says how it went.
    public func reload(node target: String?) async throws(GatewayError) -> [NodeReload] {
        guard let shared else {
            if let target, target != Self.standaloneNodeID { throw .nodeNotFound(target) }
            return [NodeReload(node: Self.standaloneNodeID, result: try await reload())]
        }
        let self_ = shared.nodeID
        let live: [String]
        do {
            live = try await shared.liveNodes().map(\.id)
        } catch {
            // Without the database this node can still reload itself; it cannot reach the others.
            guard target == nil || target == self_ else {
                throw GatewayError.databaseUnreachable
            }
            return [NodeReload(node: self_, result: try await reload())]
        }
        if let target, !live.contains(target), target != self_ { throw .nodeNotFound(target) }
        let targets = target.map { [$0] } ?? ([self_] + live.filter { $0 != self_ })
        let remote = targets.filter { $0 != self_ }
        let requestID = "\(self_)/\(UUID().uuidString)"
        if !remote.isEmpty {
            do {
                try await shared.requestReload(requestID: requestID, node: target)
            } catch {
                throw GatewayError.databaseUnreachable
            }
        }
        var answers: [String: NodeReload] = [:]
        if targets.contains(self_) { answers[self_] = await reloadHere() }
        let deadline = ContinuousClock.now + .seconds(5)
        while remote.contains(where: { answers[$0] == nil }), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
            for answer in (try? await shared.reloadAnswers(requestID: requestID)) ?? [] { answers[answer.node] = answer }
        }
        let results = targets.map { answers[$0] ?? NodeReload(node: $0, error: "no answer within 5 s") }
        if results.allSatisfy({ $0.error != nil }) {
            throw GatewayError(.badRequest, results.count == 1 ? results[0].error! : "every node refused the reload: \(results)")
        }
        return results
    }

    /// A reload of this node, as an answer for the cluster.
    private func reloadHere() async -> NodeReload {
        let node = nodeID ?? Self.standaloneNodeID
        do {
            return NodeReload(node: node, result: try await reload())
        } catch {
            return NodeReload(node: node, error: error.info)
        }
    }

    private var startedAtDate: Date {
        Date().addingTimeInterval(-Double((ContinuousClock.now - startedAt).wholeMilliseconds) / 1000)
    }

    // MARK: - The node's background work

    /// Runs a cluster node's background work until cancelled: the store's connections and notification listener,
    /// heartbeats (leases and the published client list), claiming due tasks, reclaiming the tasks of nodes that
    /// stopped, and acting on other nodes' notifications. Returns at once on a single node.
    public func runCluster() async throws {
        guard let shared else { return }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await shared.run() }
            group.addTask { await self.handleNotifications(from: shared) }
            group.addTask { await self.heartbeats(shared) }
            group.addTask { await self.housekeeping() }
            try await group.next()
            group.cancelAll()
        }
    }

    private func handleNotifications(from shared: any SharedTaskStore) async {
        for await notification in shared.notifications {
            switch notification {
            case .event(let uid, let seq):
                Task { await events.notified(uid: uid, seq: seq) }
            case .taskQueued:
                await pool.claimWork()
            case .cancel(let taskID):
                await pool.cancelIfRunningHere(id: taskID)
            case .reload(let requestID, let node):
                // Our own requests are answered where they are made.
                guard !requestID.hasPrefix(shared.nodeID + "/"), node == nil || node == shared.nodeID else { continue }
                Task {
                    let answer = await reloadHere()
                    do {
                        try await shared.answerReload(requestID: requestID, answer: answer)
                    } catch {
                        logger.error("could not answer a reload", metadata: ["error": "\(error)"])
                    }
                }
            case .resynchronize:
                Task { try? await events.resynchronize() }
                await pool.claimWork()
            }
        }
    }

    /// Renews leases every third of the lease, and publishes the client list soon after it changes.
    private func heartbeats(_ shared: any SharedTaskStore) async {
        let period = shared.leaseTimeout / 3
        var lastBeat = ContinuousClock.now - period
        var publishedVersion: UInt64?
        while !Task.isCancelled {
            let version = clients.version
            if ContinuousClock.now - lastBeat >= period || version != publishedVersion {
                do {
                    let cancelled = try await shared.heartbeat(runningTaskIDs: await pool.runningTaskIDs, clients: clients.list())
                    for id in cancelled { await pool.cancelIfRunningHere(id: id) }
                    lastBeat = .now
                    publishedVersion = version
                } catch {
                    logger.warning("heartbeat failed", metadata: ["error": "\(error)"])
                    lastBeat = .now  // not again at once: the next try is a period away, or on the next change
                }
            }
            try? await Task.sleep(for: .milliseconds(200))
        }
    }

    /// Claims due tasks (retries whose backoff ran out) twice a second, reclaims lost nodes' tasks every second,
    /// and checks every two seconds that no event was missed.
    private func housekeeping() async {
        var tick = 0
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(500))
            tick += 1
            await pool.claimWork()
            if tick % 2 == 0 {
                await pool.reclaimExpiredTasks()
                if let shared, shared.isReachable, let queued = try? await shared.queuedByCommand() {
                    clusterQueue.withLock { $0 = queued }
                }
            }
            if tick % 4 == 0 { try? await events.resynchronize() }
        }
    }
}

extension GatewayError {
    public static func nodeNotFound(_ node: String) -> Self { .init(.nodeNotFound, "no live node with id '\(node)'") }
    public static let databaseUnreachable = Self(.unavailable, "the task database cannot be reached; try again later")
}
