import Logging
import NIOCore
import NIOHTTP1
import TaskGateCore

/// Sits right after the HTTP decoder of every connection and holds it to `HTTPLimits`: a head that is slow, too
/// long or malformed, a body that stalls, an idle keep-alive connection, a client that asked for no keep-alive,
/// and a connection still open when the server drains. Each is answered with its status where an answer is still
/// possible (408, 414, 431, 400) and then closed, so no connection is ever held without a deadline. Removed when
/// the connection becomes a WebSocket, which keeps itself alive with pings.
final class HTTPConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private enum Wait {
        /// The first request's head (header timeout).
        case firstHead
        /// The next request on a kept-alive connection (keep-alive timeout).
        case nextHead
        /// More of a request body (body timeout).
        case body
    }

    private let limits: HTTPLimits
    private let logger: Logger
    private var timer: Scheduled<Void>?
    /// Requests whose head arrived and whose response has not ended.
    private var unanswered = 0
    private var readingBody = false
    private var responseStarted = false
    /// How many responses are still to end before the connection closes, counted from the first request that asked
    /// for it (HTTP/1.0 without `keep-alive`, or `Connection: close`). A count, not the latest request's wish: a
    /// client may send its next request as soon as it has read an answer's body, before that answer's end has
    /// passed here, and the next request's wish must not close the connection under the answer before it.
    private var responsesBeforeClose: Int?
    /// Answered and closing: whatever else arrives is dropped.
    private var done = false
    private var draining = false

    init(limits: HTTPLimits, logger: Logger) {
        self.limits = limits
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        wait(.firstHead, context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    // MARK: inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            cancelTimer()
            if head.uri.utf8.count > limits.maxRequestLineBytes {
                return refuse(GatewayError(.uriTooLong, "the request target is longer than \(limits.maxRequestLineBytes) bytes"), context: context)
            }
            if Self.headerBytes(head.headers) > limits.maxHeaderBytes {
                return refuse(
                    GatewayError(.headersTooLarge, "the request headers are larger than \(limits.maxHeaderBytes) bytes"),
                    context: context)
            }
            unanswered += 1
            readingBody = true
            if !head.isKeepAlive && responsesBeforeClose == nil { responsesBeforeClose = unanswered }
            wait(.body, context: context)
        case .body:
            wait(.body, context: context)
        case .end:
            readingBody = false
            cancelTimer()
        }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parseError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        guard !done else { return }
        // Smuggling shapes (Content-Length with Transfer-Encoding, two lengths), folded headers, bad methods,
        // control characters: the decoder refuses them all; we answer rather than hang up without a word.
        logger.debug("malformed request", metadata: ["error": "\(parseError)"])
        if parseError == .headerOverflow {
            refuse(GatewayError(.headersTooLarge, "the request head is too large"), context: context)
        } else {
            refuse(.badRequest("malformed HTTP request (\(parseError))"), context: context)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            draining = true
            if unanswered == 0 {
                // Between requests (or before the first): nothing to finish.
                done = true
                context.close(promise: nil)
                return
            }
            // The request under way may finish, within the drain deadline.
            let channel = context.channel
            context.eventLoop.scheduleTask(in: TimeAmount(limits.drainTimeout)) { channel.close(promise: nil) }
        }
        context.fireUserInboundEventTriggered(event)
    }

    // MARK: outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head):
            responseStarted = true
            if closesAfterThisResponse {
                head.headers.replaceOrAdd(name: "connection", value: "close")
                context.write(wrapOutboundOut(.head(head)), promise: promise)
                return
            }
            context.write(data, promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            responseStarted = false
            let closing = closesAfterThisResponse
            unanswered = max(0, unanswered - 1)
            responsesBeforeClose = responsesBeforeClose.map { $0 - 1 }
            if closing {
                done = true
                let channel = context.channel
                let written = promise ?? context.eventLoop.makePromise()
                written.futureResult.whenComplete { _ in channel.close(promise: nil) }
                context.writeAndFlush(data, promise: written)
                return
            }
            context.write(data, promise: promise)
            if unanswered == 0 && !readingBody { wait(.nextHead, context: context) }
        }
    }

    /// The response under way is the one the connection closes after: the one a request asked that of, or any while
    /// the server drains.
    private var closesAfterThisResponse: Bool {
        draining || responsesBeforeClose == 1
    }

    // MARK: deadlines

    private func wait(_ kind: Wait, context: ChannelHandlerContext) {
        cancelTimer()
        let delay: Duration =
            switch kind {
            case .firstHead: limits.headerTimeout
            case .nextHead: limits.keepAliveTimeout
            case .body: limits.bodyTimeout
            }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: TimeAmount(delay)) {
            handler.value.expired(kind, context: loopContext.value)
        }
    }

    private func cancelTimer() {
        timer?.cancel()
        timer = nil
    }

    private func expired(_ kind: Wait, context: ChannelHandlerContext) {
        timer = nil
        guard !done else { return }
        switch kind {
        case .nextHead:
            logger.trace("closing an idle keep-alive connection")
            done = true
            context.close(promise: nil)
        case .firstHead:
            refuse(GatewayError(.requestTimeout, "the request head did not arrive within \(limits.headerTimeout)"), context: context)
        case .body:
            refuse(GatewayError(.requestTimeout, "the request body stalled for \(limits.bodyTimeout)"), context: context)
        }
    }

    /// Answers with the error's status and JSON body, unless a response is already under way, then closes.
    private func refuse(_ error: GatewayError, context: ChannelHandlerContext) {
        done = true
        cancelTimer()
        guard !responseStarted else {
            context.close(promise: nil)
            return
        }
        let status = HTTPResponseStatus(statusCode: error.code)
        let body = context.channel.allocator.buffer(string: WireJSON.encode(ServerMessage.error(error, ref: nil)))
        let headers = HTTPHeaders.closingJSON(length: body.readableBytes)
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            // Half-close first so the client reads the answer; the rest goes with the timer if it lingers.
            channel.close(mode: .output, promise: nil)
            channel.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
        }
    }

    static func headerBytes(_ headers: HTTPHeaders) -> Int {
        headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
    }
}

extension HTTPHeaders {
    /// A JSON body of `length` bytes on a connection that closes after it: the head of the answers given below the
    /// router (the guard's refusals, a parked long-poll's answer).
    static func closingJSON(length: Int) -> HTTPHeaders {
        HTTPHeaders([("content-type", "application/json; charset=utf-8"), ("content-length", "\(length)"), ("connection", "close")])
    }
}
