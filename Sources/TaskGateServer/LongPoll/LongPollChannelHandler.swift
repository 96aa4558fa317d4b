import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import TaskGateCore

/// A `GET /poll` that opened its connection, served on the event loop as the WebSocket engine serves a socket: the
/// connection gets no Swift task, and while the poll waits it costs this handler, its `LongPoll` and the channel.
/// The answer closes the connection (as the router's poll does), so nothing else is ever read from it. The HTTP
/// connection guard before it still holds the request to its deadlines.
final class LongPollChannelHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let endpoint: LongPollEndpoint
    private let logger: Logger
    private var poll: LongPoll?
    private var version = HTTPVersion.http1_1
    /// Answered (or answering): whatever else arrives is dropped.
    private var answered = false

    init(endpoint: LongPollEndpoint, logger: Logger) {
        self.endpoint = endpoint
        self.logger = logger
    }

    /// The first request of a connection that this handler serves instead of the router.
    static func serves(_ head: HTTPRequestHead) -> Bool {
        head.method == .GET && URI(head.uri).path == LongPollEndpoint.path
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            version = head.version
            do throws(GatewayError) {
                poll = try endpoint.begin(
                    .init(head: head, remote: context.channel.remoteAddress),
                    remote: GatewayRequestContext.describe(context.channel.remoteAddress))
            } catch {
                respond(status: error.code, body: WireJSON.encode(ServerMessage.error(error, ref: nil)), context: context)
            }
        case .body:
            break
        case .end:
            guard let poll else { return }
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
            let eventLoop = context.eventLoop
            poll.start(on: eventLoop) { batch in
                eventLoop.execute { handler.value.answer(batch, context: loopContext.value) }
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        answered = true
        poll?.finishNow()  // the client went away: nobody reads the answer, but its place among the polls is freed
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case is ChannelShouldQuiesceEvent:
            // A graceful shutdown: the poll answers now with what there is.
            poll?.finishNow()
        case ChannelEvent.inputClosed:
            // The server allows half-closed connections, so a client that hangs up shows as its input closing (as
            // the router's poll watches for): it is gone, and so is the poll.
            answered = true
            poll?.finishNow()
            context.close(promise: nil)
        default:
            break
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("long-poll connection failed", metadata: ["error": "\(error)"])
        poll?.finishNow()
        context.close(promise: nil)
    }

    private func answer(_ batch: EventBatch?, context: ChannelHandlerContext) {
        guard let batch else {
            let error = LongPollEndpoint.eventsUnavailable
            return respond(status: error.code, body: WireJSON.encode(ServerMessage.error(error, ref: nil)), context: context)
        }
        respond(status: 200, body: LongPollEndpoint.render(batch), context: context)
    }

    private func respond(status: Int, body text: String, context: ChannelHandlerContext) {
        guard !answered, context.channel.isActive else { return }
        answered = true
        ClosingResponse.write(status: status, json: text, version: version, context: context)
    }
}
