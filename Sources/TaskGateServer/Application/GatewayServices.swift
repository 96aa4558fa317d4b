import Logging
import ServiceLifecycle
import TaskGateCore
import UnixSignals

/// Owns the gateway's lifetime inside the service group: on graceful shutdown it stops the pool, letting running
/// tasks finish for the grace period and recording the rest as interrupted.
struct GatewayService: Service {
    let gateway: Gateway
    let grace: Duration
    let maintenanceInterval: Duration
    let drain: ServerDrain
    let logger: Logger

    func run() async throws {
        do {
            try await gateway.recover()
        } catch {
            logger.error("could not recover unfinished tasks", metadata: ["error": "\(error)"])
        }
        // Retention (finished tasks, events by age) and forgetting idle users, every interval until shutdown; the
        // first pass soon after the start, so a server that restarts often still prunes.
        var wait = min(maintenanceInterval, .seconds(5))
        while true {
            try? await cancelWhenGracefulShutdown { [wait] in try await Task.sleep(for: wait) }
            if Task.isShuttingDownGracefully || Task.isCancelled { break }
            wait = maintenanceInterval
            await gateway.pruneFinishedTasks()
            do {
                try await gateway.events.maintain()
            } catch {
                logger.error("event log maintenance failed", metadata: ["error": "\(error)"])
            }
            MemoryRelease.returnFreePages()
        }
        drain.begin()
        logger.info("stopping the task pool", metadata: ["grace": "\(grace)"])
        await gateway.shutdown(grace: grace)
        // Drained: other nodes may stop listing this one (its database work stops after this service).
        await gateway.shared?.leave()
    }
}

/// `kill -HUP` reloads the handlers softly, like `taskgate reload`.
struct ReloadSignalService: Service {
    let gateway: Gateway
    let logger: Logger

    func run() async throws {
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
            do {
                let result = try await gateway.reload()
                logger.notice("reloaded on SIGHUP", metadata: ["generation": "\(result.table.generation)"])
            } catch {
                logger.error("reload on SIGHUP failed", metadata: ["error": "\(error)"])
            }
        }
    }
}

/// A cluster node's database work (connections, migrations, heartbeats, claiming, notifications); nothing on a
/// single node. A database that refuses this node at startup ends the process with the reason.
struct ClusterService: Service {
    let gateway: Gateway

    func run() async throws {
        guard gateway.shared != nil else {
            try await gracefulShutdown()  // a service that returns would end the group
            return
        }
        do {
            try await cancelWhenGracefulShutdown { try await gateway.runCluster() }
        } catch where Task.isShuttingDownGracefully || error is CancellationError {
            // Stopped for the shutdown: not a failure.
        }
    }
}

/// The recurring schedules (every node runs them; the store keeps one task per tick).
struct ScheduleService: Service {
    let scheduler: Scheduler

    func run() async throws {
        await cancelWhenGracefulShutdown { await scheduler.run() }
    }
}
