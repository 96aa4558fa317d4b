import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOHTTP1
import TaskGateCore

/// Wraps the HTTP/WebSocket child channel with a gate in front of the WebSocket upgrade: a refused upgrade
/// (bad uid, missing or forged token, foreign origin, connection limits) is answered with its real status
/// (400, 401, 403, 429, 503) and the JSON error body, before any WebSocket exists. (The library's own refusal is
/// always an empty 400.)
struct AdmissionChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value
    let base: Base
    let admission: Admission
    let logger: Logger

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        base.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let decoder = try channel.pipeline.syncOperations.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try channel.pipeline.syncOperations.addHandler(
                UpgradeGate(admission: admission, logger: self.logger), position: .after(decoder))
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

/// Sees the connection's first request head before the upgrade handler does (only the first request can be an
/// upgrade), then steps out of the pipeline; a refused upgrade is answered here and goes no further.
final class UpgradeGate: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let admission: Admission
    private let logger: Logger
    private var refusing = false

    init(admission: Admission, logger: Logger) {
        self.admission = admission
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            if let refusal = refusal(for: head, remote: context.channel.remoteAddress) {
                refusing = true
                respond(refusal, context: context)
                return
            }
            context.fireChannelRead(data)
            // After the first request the pipeline carries WebSocket frames or more HTTP: nothing for the gate.
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        case .body, .end:
            if !refusing { context.fireChannelRead(data) }
        }
    }

    private func refusal(for head: HTTPRequestHead, remote: SocketAddress?) -> GatewayError? {
        guard head.headers["upgrade"].contains(where: { $0.lowercased() == "websocket" }) else { return nil }
        guard URI(head.uri).path == "/ws" else { return nil }
        let candidate = Admission.Candidate(head: head, remote: remote)
        do {
            let identity = try admission.identify(candidate)
            try admission.admitConnection(uid: identity.uid)
            return nil
        } catch {
            logger.notice(
                "websocket upgrade refused",
                metadata: ["status": "\(error.code)", "reason": .string(error.info), "remote": "\(remote.map { "\($0)" } ?? "-")"])
            return error
        }
    }

    private func respond(_ error: GatewayError, context: ChannelHandlerContext) {
        let body = ByteBuffer(string: WireJSON.encode(ServerMessage.error(error, ref: nil)))
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
        headers.add(name: "Content-Length", value: "\(body.readableBytes)")
        headers.add(name: "Connection", value: "close")
        let head = HTTPResponseHead(
            version: .http1_1, status: HTTPResponseStatus(statusCode: error.code), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let channel = context.channel
        // Closing only our side lets the client read the answer and close; the upgrade handler then sees its input
        // end, which is quiet. A client that stays is cut off after a few seconds.
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            channel.close(mode: .output, promise: nil)
            channel.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
        }
    }
}
