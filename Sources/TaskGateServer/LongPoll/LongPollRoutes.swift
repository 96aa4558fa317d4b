import Hummingbird
import ServiceLifecycle
import TaskGateCore

/// Long-polling for browsers without WebSocket: `GET /poll` waits for the uid's events after a cursor,
/// `POST /poll` carries one client message and returns its direct reply. Events come from the same per-uid log
/// as WebSocket's, so both see the same events in the same order.
struct LongPollRoutes {
    let gateway: Gateway
    let admission: Admission
    /// The same limits as a connection's messages, the rate counted per uid.
    let inbound: InboundLimits
    var metrics: GatewayMetrics? = nil
    let messageRate: RateLimiters

    init(gateway: Gateway, admission: Admission, inbound: InboundLimits, metrics: GatewayMetrics? = nil) {
        self.gateway = gateway
        self.admission = admission
        self.inbound = inbound
        self.metrics = metrics
        messageRate = RateLimiters(perSecond: inbound.messagesPerSecond)
    }
    static let defaultTimeout = 25
    static let maxTimeout = 60

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/poll") { request, context -> Response in
            let identity = try admission.identify(.init(request: request, context: context))
            let timeout = try Self.timeoutSeconds(request)
            guard gateway.events.waiterCount(uid: identity.uid) < admission.limits.pollsPerUID else {
                throw GatewayError(.tooManyRequests, "uid '\(identity.uid)' already has \(admission.limits.pollsPerUID) polls waiting")
            }
            let pollKey = gateway.clients.beginPoll(uid: identity.uid, remote: context.remoteDescription, admin: identity.isAdmin)
            defer { gateway.clients.endPoll(pollKey) }
            let cursor = identity.cursor ?? 0
            let batch: EventBatch
            metrics?.longPollStarted()
            defer { metrics?.longPollEnded() }
            do {
                // A client that goes away cancels the wait instead of leaving it parked until the timeout, and so
                // does a graceful shutdown (the poll then answers with what there is).
                batch = try await request.body.consumeWithCancellationOnInboundClose { _ in
                    try await cancelWhenGracefulShutdown {
                        try await gateway.events.waitForEvents(uid: identity.uid, after: cursor, timeout: .seconds(timeout))
                    }
                }
            } catch is CancellationError {
                // The client is gone; nobody will read this answer.
                batch = EventBatch(events: [], cursor: cursor, reset: false)
            } catch {
                throw GatewayError(.unavailable, "events unavailable; try again")
            }
            metrics?.messageOut(.longPoll, count: batch.events.count)
            var response = Response.jsonText(Self.render(batch))
            // Watching for the client going away consumes the connection, so it closes after this answer: say so.
            response.headers[.connection] = "close"
            return response
        }

        router.post("/poll") { request, context -> Response in
            let identity = try admission.identify(.init(request: request, context: context))
            guard messageRate.allow(identity.uid) else {
                throw inbound.tooFast()
            }
            let body: ByteBuffer
            do {
                body = try await request.body.collect(upTo: inbound.maxMessageBytes)
            } catch {
                throw GatewayError(.tooLarge, "message is larger than \(inbound.maxMessageBytes) bytes")
            }
            let pollKey = gateway.clients.beginPoll(uid: identity.uid, remote: context.remoteDescription, admin: identity.isAdmin)
            defer { gateway.clients.endPoll(pollKey) }
            let session = Session(uid: identity.uid, isAdmin: identity.isAdmin, transport: .longPoll, gateway: gateway)
            var answer = ServerMessage.error(GatewayError(.internalError, "no reply"), ref: nil)
            metrics?.messageIn(.longPoll)
            await session.handle(body.readableBytesView) { answer = $0 }
            metrics?.messageOut(.longPoll)
            return .json(answer, status: .init(code: answer.code ?? 200))
        }
    }

    static func timeoutSeconds(_ request: Request) throws(GatewayError) -> Int {
        guard let text = request.uri.queryParameters["timeout"] else { return defaultTimeout }
        guard let seconds = Int(text), (0...maxTimeout).contains(seconds) else {
            throw .badRequest("'timeout' must be a whole number of seconds from 0 to \(maxTimeout)")
        }
        return seconds
    }

    /// Events are encoded once when they are published, so the response is assembled from their JSON rather than
    /// decoded and encoded again. Shape: `{"cursor":M,"events":[…],"reset":false}`.
    static func render(_ batch: EventBatch) -> String {
        var text = "{\"cursor\":\(batch.cursor),\"events\":["
        text.reserveCapacity(batch.events.reduce(64) { $0 + $1.json.utf8.count + 1 })
        for (index, event) in batch.events.enumerated() {
            if index > 0 { text.append(",") }
            text.append(event.json)
        }
        text.append("],\"reset\":\(batch.reset)}")
        return text
    }
}
