import Hummingbird
import NIOPosix
import ServiceLifecycle
import TaskGateCore

/// Long-polling for browsers without WebSocket: `GET /poll` waits for the uid's events after a cursor,
/// `POST /poll` carries one client message and returns its direct reply. Events come from the same per-uid log
/// as WebSocket's, so both see the same events in the same order.
struct LongPollRoutes {
    let endpoint: LongPollEndpoint
    /// The same limits as a connection's messages, the rate counted per uid.
    let inbound: InboundLimits
    let messageRate: RateLimiters

    init(endpoint: LongPollEndpoint, inbound: InboundLimits) {
        self.endpoint = endpoint
        self.inbound = inbound
        messageRate = RateLimiters(perSecond: inbound.messagesPerSecond)
    }

    private var gateway: Gateway { endpoint.gateway }
    private var admission: Admission { endpoint.admission }
    private var metrics: GatewayMetrics? { endpoint.metrics }

    func addRoutes(to router: Router<GatewayRequestContext>) {
        // A poll that opens its connection is parked on the event loop (`LongPollChannelHandler`); this one follows
        // other requests on a kept-alive connection, whose task waits for it.
        router.get("/poll") { request, context -> Response in
            let poll = try endpoint.begin(.init(request: request, context: context), remote: context.remoteDescription)
            // The timer needs a running loop: the singleton's (a router under test has no live channel).
            let eventLoop = MultiThreadedEventLoopGroup.singleton.any()
            let batch: EventBatch?
            do {
                // A client that goes away ends the wait instead of leaving it parked until the timeout, and so
                // does a graceful shutdown (the poll then answers with what there is).
                batch = try await request.body.consumeWithCancellationOnInboundClose { _ in
                    await cancelWhenGracefulShutdown {
                        await withTaskCancellationHandler {
                            await withCheckedContinuation { continuation in
                                poll.start(on: eventLoop) { continuation.resume(returning: $0) }
                            }
                        } onCancel: {
                            poll.finishNow()
                        }
                    }
                }
            } catch {
                poll.finishNow()
                throw error
            }
            guard let batch else { throw LongPollEndpoint.eventsUnavailable }
            var response = Response.jsonText(LongPollEndpoint.render(batch))
            // Watching for the client going away consumes the connection, so it closes after this answer: say so.
            response.headers[.connection] = "close"
            // And it does, read or not: a client that does not read its answer does not hold the connection.
            let channel = context.channel
            channel.eventLoop.scheduleTask(in: ClosingResponse.readDeadline) { channel.close(promise: nil) }
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
}
