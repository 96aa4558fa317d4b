import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import ServiceLifecycle
import TaskGateCore

/// Builds the whole server: one HTTP/1.1 port with the WebSocket upgrade, long-poll, the REST admin API, the demo
/// page and the health check, all sharing one `Gateway`. The CLI and the tests both call this.
public func buildApplication(
    _ arguments: ServerSettings, gateway existingGateway: Gateway? = nil, tokens existingTokens: UserTokens? = nil,
    metrics: GatewayMetrics = GatewayMetrics(), drain: ServerDrain = ServerDrain(), openStreams: OpenStreams = OpenStreams()
) async throws -> some ApplicationProtocol {
    let logger = makeLogger(arguments)
    var tokens = existingTokens
    if tokens == nil { tokens = try await loadUserTokens(arguments) }
    let gateway = try existingGateway ?? buildGateway(arguments, metrics: metrics, tokens: tokens)
    let auth = AdminAuthenticator(token: arguments.adminToken, loopbackIsAdmin: arguments.authMode == .dev)
    if arguments.adminToken == nil {
        if arguments.authMode == .token {
            logger.warning("token mode without --admin-token: admin is off (no admin API, no admin connections)")
        } else {
            logger.warning("no admin token configured: the admin API and admin commands answer loopback clients only")
        }
    }
    if arguments.authMode == .dev && !["127.0.0.1", "::1", "localhost"].contains(arguments.host) {
        logger.warning("dev auth mode trusts ?uid= from anyone: use --auth token when listening beyond loopback")
    }
    let admission = Admission(
        mode: arguments.authMode, tokens: tokens,
        adminToken: arguments.adminToken, allowedOrigins: arguments.allowedOrigins, limits: arguments.limits,
        clients: gateway.clients)

    let router = Router(context: GatewayRequestContext.self)
    // The HTTP server span, a child of the request's W3C `traceparent` (only recorded when a tracer is bootstrapped).
    router.add(middleware: TracingMiddleware())
    router.add(middleware: ErrorMiddleware())
    router.add(middleware: LogRequestsMiddleware(.debug))
    router.add(middleware: StaticFileGuard(root: arguments.publicDirectory))
    router.add(middleware: FileMiddleware(arguments.publicDirectory, searchForIndexHtml: true, logger: logger))
    Health.addRoute(to: router, gateway: gateway)
    MetricsRoutes(gateway: gateway, metrics: metrics).addRoutes(to: router)
    let webSocketPaths = Set(WebSocketPaths.always + arguments.webSocketPaths)
    WebSocketPlainRoute(admission: admission, paths: webSocketPaths).addRoutes(to: router)
    let longPoll = LongPollEndpoint(gateway: gateway, admission: admission, metrics: metrics)
    LongPollRoutes(endpoint: longPoll, inbound: arguments.inboundLimits).addRoutes(to: router)
    let eventStream = SSEEndpoint(gateway: gateway, admission: admission, inbound: arguments.inboundLimits, metrics: metrics)
    SSERoutes(endpoint: eventStream, outbound: arguments.limits.outbound).addRoutes(to: router)
    AdminRoutes(gateway: gateway, auth: auth, maxBodyBytes: arguments.maxMessageBytes).addRoutes(to: router)

    // Frames may be larger than a message may be, so that an oversized message gets a `413` reply rather than a
    // closed socket; beyond the frame limit the connection closes with 1009.
    let frameLimit = max(arguments.maxMessageBytes * 4, 1 << 20)
    var gatewaySockets = GatewayHTTPChannel.WebSockets(
        gateway: gateway, admission: admission,
        configuration: .init(
            maxMessageBytes: arguments.maxMessageBytes, frameLimit: frameLimit, outbound: arguments.limits.outbound),
        inbound: arguments.inboundLimits,
        enableEcho: arguments.enableEchoRoute, metrics: metrics, logger: logger)
    gatewaySockets.paths = webSocketPaths
    gatewaySockets.openStreams = openStreams
    let webSockets = gatewaySockets
    let httpLimits = arguments.httpLimits
    let server = HTTPServerBuilder { responder in
        GatewayHTTPChannel(
            responder: responder, webSockets: webSockets, longPoll: longPoll, eventStream: eventStream, limits: httpLimits,
            drain: drain, logger: logger)
    }
    let connectionBudget = httpLimits.connectionBudget(openFileLimit: OpenFileLimit.current)
    logger.info("accepting connections", metadata: ["max": "\(connectionBudget)"])
    return Application(
        router: router,
        server: server,
        configuration: .init(
            address: .hostname(arguments.host, port: arguments.port), serverName: "TaskGate",
            // At the budget the server stops accepting until a connection closes, instead of failing on EMFILE.
            availableConnectionsDelegate: MaximumAvailableConnections(connectionBudget, logger: logger)),
        logger: logger
    )
}

/// The domain behind the server: store, handler registry (built-ins plus the config file's handlers) and pool.
/// The token keys of token mode (`nil` when none are configured), read from their files.
func loadUserTokens(_ arguments: ServerSettings) async throws -> UserTokens? {
    guard arguments.userTokens.hasKeys else { return nil }
    let tokens = try await UserTokens.load(arguments.userTokens)
    makeLogger(arguments).info("user token keys", metadata: ["keys": "\(tokens.keySummary.joined(separator: ", "))"])
    return tokens
}

/// `tokens`' key files are read again on every reload, before the handlers.
/// `backend`: where tasks live, when it is not one this library makes from `arguments.store` (memory or SQLite). The
/// executable brings the PostgreSQL cluster store, so that this library does not link PostgreSQL.
public func buildGateway(
    _ arguments: ServerSettings, backend: TaskBackend? = nil, metrics: GatewayMetrics? = nil, tokens: UserTokens? = nil
) throws -> Gateway {
    let logger = makeLogger(arguments)
    let backend = try backend ?? makeLocalBackend(arguments, logger: logger)
    let registry: any HandlerRegistry
    do {
        registry = try ConfiguredHandlerRegistry(configPath: arguments.configPath, logger: logger)
    } catch {
        throw StartupError(description: "bad config: \(error)")
    }
    return Gateway(
        configuration: .init(
            pool: .init(
                workers: arguments.taskWorkers, queueLimit: arguments.queueLimit, tasksPerUID: arguments.limits.tasksPerUID,
                fairShare: arguments.fairShare),
            eventRetention: arguments.eventRetention,
            taskRetention: arguments.taskRetention
        ),
        backend: metrics.map { backend.metered(by: $0) } ?? backend,
        registry: registry,
        logger: logger,
        reloadFirst: tokens.map { tokens in { @Sendable in try await tokens.reload() } }
    )
}

/// The server as the CLI runs it: the application plus the gateway's lifecycle (recovery at start, maintenance,
/// draining the pool at shutdown) and reload on SIGHUP.
///
/// On SIGTERM new connections are closed as they arrive; then the services stop in reverse order: first the pool
/// drains (new submits get 503, running tasks get the grace period, and their `done` events still reach the open
/// connections), then the HTTP server closes idle connections, gives requests under way `drainTimeout` to finish,
/// and closes every WebSocket with a close frame.
public func buildServer(_ arguments: ServerSettings, backend: TaskBackend? = nil) async throws -> ServiceGroup {
    let logger = makeLogger(arguments)
    let metrics = GatewayMetrics()
    let tokens = try await loadUserTokens(arguments)
    let gateway = try buildGateway(arguments, backend: backend, metrics: metrics, tokens: tokens)
    let drain = ServerDrain()
    let openStreams = OpenStreams()
    let app = try await buildApplication(
        arguments, gateway: gateway, tokens: tokens, metrics: metrics, drain: drain, openStreams: openStreams)
    var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
    if arguments.tracing {
        // First in, last out: it flushes the spans of everything that stops before it.
        services.append(.init(service: try OTelTracing.bootstrap(environment: ProcessInfo.processInfo.environment, logger: logger)))
    }
    var configuration = ServiceGroupConfiguration(
        services: services + [
            // First in, last out: a cluster node's database work outlives the draining of its pool.
            .init(service: ClusterService(gateway: gateway)),
            // Stops after the HTTP server: the WebSockets' closing handshakes (1001) finish before the process ends.
            .init(service: StreamDrainService(streams: openStreams, timeout: .seconds(5))),
            .init(service: app),
            .init(
                service: GatewayService(
                    gateway: gateway, grace: arguments.shutdownGrace, maintenanceInterval: arguments.maintenanceInterval, drain: drain,
                    logger: logger)),
            .init(service: ReloadSignalService(gateway: gateway, logger: logger)),
            // Last in, first out: no tick is submitted to a pool that is shutting down.
            .init(service: ScheduleService(scheduler: Scheduler(gateway: gateway, logger: logger))),
        ],
        gracefulShutdownSignals: [.sigterm, .sigint],
        logger: logger
    )
    // A last bound on SIGTERM: the pool's grace, the connections' drain, and some slack for the database.
    configuration.maximumGracefulShutdownDuration = arguments.shutdownGrace + arguments.httpLimits.drainTimeout + .seconds(15)
    return ServiceGroup(configuration: configuration)
}

/// A store or config that cannot be used is a startup error that names the file and the reason, not a crash.
public struct StartupError: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// The single-node stores: `--store memory` and `--store sqlite`.
func makeLocalBackend(_ arguments: ServerSettings, logger: Logger) throws -> TaskBackend {
    switch arguments.store {
    case .memory:
        logger.notice("tasks and events are kept in memory: they are gone after a restart")
        // Its own count limit is the retention count (a memory store trims as it inserts, between prunes).
        return .local(InMemoryTaskStore(retainFinished: min(arguments.taskRetention.count ?? .max / 4, .max / 4)))
    case .sqlite:
        let path = URL(fileURLWithPath: arguments.dataDirectory).appendingPathComponent("taskgate.sqlite").path
        do {
            try FileManager.default.createDirectory(atPath: arguments.dataDirectory, withIntermediateDirectories: true)
            let store = try SQLiteTaskStore(path: path)
            logger.info("task store opened", metadata: ["path": .string(path)])
            return .local(store)
        } catch {
            throw StartupError(
                description: "cannot open the task database \(path): \(readable(error)) "
                    + "(check that --data-dir is a writable directory on a disk with free space)")
        }
    case .postgres:
        throw StartupError(description: "--store postgres needs the PostgreSQL backend, which the taskgate executable provides")
    }
}

/// Foundation's file errors print as a dictionary; the POSIX reason underneath is what a person needs.
func readable(_ error: any Error) -> String {
    let nsError = error as NSError
    if nsError.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(nsError.code)))
    }
    if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? any Error {
        return readable(underlying)
    }
    return "\(error)"
}

func makeLogger(_ arguments: ServerSettings) -> Logger {
    var logger = Logger(label: "taskgate")
    logger.logLevel = arguments.logLevel
    return logger
}
