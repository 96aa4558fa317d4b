import NIOCore
import NIOPosix
import NIOWebSocket

/// What one WebSocket connection of the generator does.
struct ConnectionScript: Sendable {
    enum Kind: Sendable {
        /// Send, wait for `replies` messages, send again, until the run stops.
        case closedLoop
        /// Send once and wait for the replies, then stay idle.
        case once
        /// Send nothing.
        case none
    }

    var kind: Kind
    /// Sent in turn.
    var messages: [[UInt8]]
    var replies: Int
    var skipFirst: Int
    var expect: [UInt8]?
}

/// Counts the bytes that arrive from the socket, before any decoding (the WebSocket bytes on the wire).
final class WireByteCounter: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    let stats: ConnectionStats
    let phase: RunPhase

    init(stats: ConnectionStats, phase: RunPhase) {
        self.stats = stats
        self.phase = phase
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if phase.current == .measuring {
            let count = unwrapInboundIn(data).readableBytes
            stats.state.withLock { $0.wireBytesIn += count }
        }
        context.fireChannelRead(data)
    }
}

/// The client side of the opening handshake, by hand: one request, then the 101 and its headers. Then it puts the
/// WebSocket frame codec and `LoadWebSocketHandler` in its place.
final class UpgradeHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let request: String
    let script: ConnectionScript
    let stats: ConnectionStats
    let phase: RunPhase
    let ready: EventLoopPromise<Bool>
    private var received: ByteBuffer?

    init(host: String, port: Int, path: String, deflate: Bool, script: ConnectionScript, stats: ConnectionStats, phase: RunPhase,
         ready: EventLoopPromise<Bool>) {
        var request = "GET \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        request += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        if deflate { request += "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" }
        self.request = request + "\r\n"
        self.script = script
        self.stats = stats
        self.phase = phase
        self.ready = ready
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: request)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if received == nil { received = bytes } else { received!.writeBuffer(&bytes) }
        guard let buffer = received else { return }
        let view = buffer.readableBytesView
        guard let end = view.firstRange(of: [13, 10, 13, 10]) else {
            if buffer.readableBytes > 16 * 1024 { fail(context, "upgrade response headers too large") }
            return
        }
        let headerLength = end.upperBound - view.startIndex
        let head = String(decoding: view[view.startIndex..<end.lowerBound], as: UTF8.self)
        guard head.hasPrefix("HTTP/1.1 101") else {
            return fail(context, "upgrade refused: \(head.split(separator: "\r\n").first ?? "")")
        }
        let deflate = head.lowercased().split(separator: "\r\n").contains {
            $0.hasPrefix("sec-websocket-extensions:") && $0.contains("permessage-deflate")
        }
        var rest = buffer
        rest.moveReaderIndex(forwardBy: headerLength)
        received = nil
        do {
            let handler = LoadWebSocketHandler(script: script, stats: stats, phase: phase, ready: ready, deflate: deflate)
            try context.pipeline.syncOperations.addHandlers(
                [ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 1 << 24)), WebSocketFrameEncoder(), handler],
                position: .after(self))
            if rest.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(rest)) }
            // The codec is in place: the script may start (writing from handlerAdded would be too early).
            context.fireUserInboundEventTriggered(WebSocketOpened())
            context.pipeline.syncOperations.removeHandler(self, promise: nil)
        } catch {
            fail(context, "\(error)")
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        ready.fail(LoadError("connection closed during the upgrade"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(context, "\(error)")
    }

    private func fail(_ context: ChannelHandlerContext, _ reason: String) {
        ready.fail(LoadError(reason))
        context.close(promise: nil)
    }
}

/// One connection's closed loop (or single exchange) over WebSocket frames.
final class LoadWebSocketHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let script: ConnectionScript
    let stats: ConnectionStats
    let phase: RunPhase
    let ready: EventLoopPromise<Bool>
    let deflate: Bool
    private var toSkip: Int
    private var awaiting = 0
    private var sentAt: UInt64 = 0
    private var isReady = false
    private var nextMessage = Int.random(in: 0..<64)

    init(script: ConnectionScript, stats: ConnectionStats, phase: RunPhase, ready: EventLoopPromise<Bool>, deflate: Bool) {
        self.script = script
        self.stats = stats
        self.phase = phase
        self.ready = ready
        self.deflate = deflate
        self.toSkip = script.skipFirst
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is WebSocketOpened {
            if toSkip == 0 { becomeReady(context) }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    private func becomeReady(_ context: ChannelHandlerContext) {
        guard !isReady else { return }
        isReady = true
        switch script.kind {
        case .closedLoop:
            ready.succeed(deflate)
            send(context)
        case .once:
            send(context)
        case .none:
            ready.succeed(deflate)
        }
    }

    private func send(_ context: ChannelHandlerContext) {
        nextMessage = (nextMessage + 1) % script.messages.count
        let buffer = context.channel.allocator.buffer(bytes: script.messages[nextMessage])
        awaiting = script.replies
        sentAt = monotonicNanoseconds()
        let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: buffer)
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
            return
        case .connectionClose:
            context.close(promise: nil)
            return
        case .pong:
            return
        default:
            break
        }
        if phase.current == .measuring {
            let bytes = frame.data.readableBytes
            stats.state.withLock {
                $0.payloadBytesIn += bytes
                if frame.fin { $0.messagesIn += 1 }
            }
        }
        guard frame.fin else { return }
        if toSkip > 0 {
            toSkip -= 1
            if toSkip == 0 { becomeReady(context) }
            return
        }
        guard awaiting > 0 else { return }
        awaiting -= 1
        guard awaiting == 0 else { return }
        let latency = monotonicNanoseconds() - sentAt
        if let expect = script.expect, !frame.rsv1, frame.data.readableBytesView.firstRange(of: expect) == nil {
            stats.state.withLock { $0.errors += 1 }
        }
        switch script.kind {
        case .closedLoop:
            let current = phase.current
            if current == .measuring { stats.record(latency: latency) }
            if current != .stopping { send(context) }
        case .once:
            stats.record(latency: latency)
            ready.succeed(deflate)
        case .none:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        ready.fail(LoadError("connection closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        stats.state.withLock { $0.errors += 1 }
        context.close(promise: nil)
    }
}

/// Sent down the pipeline once the WebSocket codec replaced the handshake handler.
struct WebSocketOpened {}

struct LoadError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Opens `count` WebSocket connections in batches and waits for each to be ready (upgraded, hello read, and for
/// `.once` the exchange done).
func openWebSockets(
    group: MultiThreadedEventLoopGroup, target: Target, count: Int, deflate: Bool, script: ConnectionScript, phase: RunPhase,
    batch: Int
) async -> (channels: [any Channel], stats: [ConnectionStats], deflated: Int, failures: [String]) {
    var channels: [any Channel] = []
    var allStats: [ConnectionStats] = []
    var deflated = 0
    var failures: [String] = []
    var index = 0
    while index < count {
        let upper = min(count, index + batch)
        var pending: [(any Channel, EventLoopFuture<Bool>)] = []
        for connection in index..<upper {
            let stats = ConnectionStats()
            let eventLoop = group.next()
            let ready = eventLoop.makePromise(of: Bool.self)
            let path = target.path(for: connection)
            let bootstrap = ClientBootstrap(group: eventLoop)
                .channelOption(.socketOption(.so_reuseaddr), value: 1)
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers([
                            WireByteCounter(stats: stats, phase: phase),
                            UpgradeHandler(
                                host: target.host, port: target.port, path: path, deflate: deflate, script: script, stats: stats,
                                phase: phase, ready: ready),
                        ])
                    }
                }
            do {
                let channel = try await bootstrap.connect(host: target.host, port: target.port).get()
                pending.append((channel, ready.futureResult))
                allStats.append(stats)
            } catch {
                ready.fail(error)
                failures.append("connect: \(error)")
            }
        }
        for (channel, future) in pending {
            do {
                if try await future.get() { deflated += 1 }
                channels.append(channel)
            } catch {
                failures.append("\(error)")
                channel.close(promise: nil)
            }
        }
        index = upper
    }
    return (channels, allStats, deflated, failures)
}

func closeAll(_ channels: [any Channel]) async {
    for channel in channels {
        let frame = WebSocketFrame(
            fin: true, opcode: .connectionClose, maskKey: .random(), data: channel.allocator.buffer(bytes: [0x03, 0xE8]))
        channel.writeAndFlush(frame, promise: nil)
    }
    try? await Task.sleep(for: .milliseconds(200))
    for channel in channels { try? await channel.close() }
}
