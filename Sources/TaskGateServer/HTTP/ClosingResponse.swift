import NIOCore
import NIOHTTP1

/// The whole answer of a connection served on its event loop (a long-poll's, a refused event stream's), then the
/// connection closes: the same headers as the router's JSON responses.
enum ClosingResponse {
    /// How long an answer may take to be read before the connection is closed anyway: a client that does not read
    /// does not hold the connection, nor the bytes waiting for it (the write may never complete).
    static let readDeadline = TimeAmount.seconds(10)

    static func write(status: Int, json text: String, version: HTTPVersion, context: ChannelHandlerContext) {
        let body = context.channel.allocator.buffer(string: text)
        var headers = HTTPHeaders.closingJSON(length: body.readableBytes)
        headers.add(name: "cache-control", value: "no-store")
        let head = HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: status), headers: headers)
        context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
        context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(body))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        context.eventLoop.scheduleTask(in: readDeadline) { channel.close(promise: nil) }
    }
}
