import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

typealias OpenedWebSockets = (channels: [any Channel], stats: [ConnectionStats], deflated: Int, failures: [String])

/// What a WebSocket run starts with and ends with: its event loops, its phase, the probe of the server's process,
/// the connections its script drives, and their summary.
struct WebSocketRun {
    let options: LoadCommand
    let target: Target
    let group: MultiThreadedEventLoopGroup
    let phase = RunPhase()
    let probe: ServerProbe?
    let script: ConnectionScript

    init(options: LoadCommand, target: Target, kind: ConnectionScript.Kind) {
        self.options = options
        self.target = target
        group = MultiThreadedEventLoopGroup(numberOfThreads: options.threads)
        probe = options.serverPid.map(ServerProbe.init(pid:))
        script = ConnectionScript(
            kind: kind, messages: options.expandedMessages, replies: options.replies, skipFirst: options.skipFirst,
            expect: options.expect.map { Array($0.utf8) })
    }

    func open() async -> OpenedWebSockets {
        let opened = await openWebSockets(
            group: group, target: target, count: options.connections, deflate: options.deflate, script: script, phase: phase,
            batch: options.connectBatch)
        report(opened.failures)
        return opened
    }

    func close(_ opened: OpenedWebSockets, mode: String, seconds: Double) async throws -> Summary {
        await closeAll(opened.channels)
        try await group.shutdownGracefully()
        var summary = Summary.collect(
            mode: mode, label: options.label, connections: options.connections, connected: opened.channels.count,
            seconds: seconds, stats: opened.stats, failures: opened.failures.count)
        summary.deflateNegotiated = opened.deflated
        return summary
    }
}

/// Closed loop over WebSocket: msgs/s, latency, server CPU per round trip.
struct RoundTripRun {
    let options: LoadCommand
    let target: Target

    func run() async throws -> Summary {
        let run = WebSocketRun(options: options, target: target, kind: .closedLoop)
        let opened = await run.open()
        try await Task.sleep(for: .seconds(options.warmup))
        let cpuStart = run.probe?.cpuSeconds()
        let clientStart = ownCPUSeconds()
        let start = monotonicNanoseconds()
        run.phase.set(.measuring)
        try await Task.sleep(for: .seconds(options.duration))
        run.phase.set(.stopping)
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        let cpuEnd = run.probe?.cpuSeconds()
        let clientCPU = ownCPUSeconds() - clientStart
        let rss = run.probe?.rssKB()
        try await Task.sleep(for: .milliseconds(100))
        var summary = try await run.close(opened, mode: "rtt", seconds: seconds)
        summary.serverCPUSeconds = zip(cpuStart, cpuEnd).map { $1 - $0 }
        summary.clientCPUSeconds = clientCPU
        summary.rssAfterKB = rss
        return summary
    }
}

/// Idle connections: server RSS before and after opening them (and optionally one exchange on each).
struct IdleRun {
    let options: LoadCommand
    let target: Target

    func run() async throws -> Summary {
        let run = WebSocketRun(options: options, target: target, kind: options.exchange ? .once : .none)
        let rssBefore = run.probe?.rssKB()
        let cpuStart = run.probe?.cpuSeconds()
        let start = monotonicNanoseconds()
        let opened = await run.open()
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        // Let the server settle (buffers returned, tasks parked), then hold the connections for the duration.
        try await Task.sleep(for: .seconds(options.settle))
        try await Task.sleep(for: .seconds(options.duration))
        let rssAfter = run.probe?.rssKB()
        let cpuEnd = run.probe?.cpuSeconds()
        var summary = try await run.close(opened, mode: "idle", seconds: seconds)
        // Every connection held counts as one completed operation (the exchange, if any, is in the latencies).
        summary.completed = opened.channels.count
        summary.serverCPUSeconds = zip(cpuStart, cpuEnd).map { $1 - $0 }
        summary.rssBeforeKB = rssBefore
        summary.rssAfterKB = rssAfter
        return summary
    }
}

private func zip(_ a: Double?, _ b: Double?) -> (Double, Double)? {
    guard let a, let b else { return nil }
    return (a, b)
}

private func report(_ failures: [String]) {
    guard !failures.isEmpty else { return }
    var counts: [String: Int] = [:]
    for failure in failures { counts[failure, default: 0] += 1 }
    for (failure, count) in counts.sorted(by: { $0.value > $1.value }).prefix(5) {
        FileHandleStderr.write("taskgate-load: \(count) connection(s) failed: \(failure)\n")
    }
}

enum FileHandleStderr {
    static func write(_ text: String) {
        var text = text
        text.withUTF8 { bytes in _ = fputsBytes(bytes) }
    }

    private static func fputsBytes(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        #if canImport(Glibc)
        return Glibc.write(2, bytes.baseAddress, bytes.count)
        #else
        return Darwin.write(2, bytes.baseAddress, bytes.count)
        #endif
    }
}

extension Summary {
    static func collect(
        mode: String, label: String, connections: Int, connected: Int, seconds: Double, stats: [ConnectionStats], failures: Int
    ) -> Summary {
        var summary = Summary(
            mode: mode, label: label, connections: connections, connected: connected, seconds: seconds, completed: 0,
            errors: failures, latenciesNanos: [], serverCPUSeconds: nil, clientCPUSeconds: 0, rssBeforeKB: nil, rssAfterKB: nil,
            wireBytesIn: 0, payloadBytesIn: 0, messagesIn: 0, deflateNegotiated: 0)
        for connection in stats {
            connection.state.withLock { state in
                summary.latenciesNanos += state.latenciesNanos
                summary.completed += state.completed
                summary.errors += state.errors
                summary.wireBytesIn += state.wireBytesIn
                summary.payloadBytesIn += state.payloadBytesIn
                summary.messagesIn += state.messagesIn
            }
        }
        return summary
    }
}

#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

// MARK: - Long-poll

/// When each uid's task was submitted and when its poll answered.
final class PollTimes: Sendable {
    struct State {
        var submitted: [UInt64]
        var answered: [UInt64]
        /// When the submit's 202 arrived: the task is durable and queued from then on.
        var accepted: [UInt64]
        var errors = 0
    }

    let state: Mutex<State>

    init(count: Int) {
        state = Mutex(State(
            submitted: Array(repeating: 0, count: count), answered: Array(repeating: 0, count: count),
            accepted: Array(repeating: 0, count: count)))
    }
}

/// A long-poll run's HTTP request: done when its connection ends, an error counted when it fails.
/// An HTTP/1.1 client handler of the long-poll run: it counts errors and resolves `done` when its connection closes.
protocol PollRequestHandler: ChannelInboundHandler
where InboundIn == HTTPClientResponsePart, OutboundOut == HTTPClientRequestPart {
    var times: PollTimes { get }
    var done: EventLoopPromise<Void> { get }
}

extension PollRequestHandler {
    func channelInactive(context: ChannelHandlerContext) {
        done.succeed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        times.state.withLock { $0.errors += 1 }
        context.close(promise: nil)
    }
}

/// One parked `GET /poll`: notes when the answer starts arriving.
final class PollWaiterHandler: PollRequestHandler {
    let index: Int
    let head: HTTPRequestHead
    let times: PollTimes
    let done: EventLoopPromise<Void>

    init(index: Int, head: HTTPRequestHead, times: PollTimes, done: EventLoopPromise<Void>) {
        self.index = index
        self.head = head
        self.times = times
        self.done = done
    }

    func channelActive(context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let response):
            let now = monotonicNanoseconds()
            let index = index
            times.state.withLock {
                if response.status == .ok { $0.answered[index] = now } else { $0.errors += 1 }
            }
        case .body:
            break
        case .end:
            done.succeed()
            context.close(promise: nil)
        }
    }
}

/// Submits echo tasks over REST, one at a time on its keep-alive connection, taking uids from a shared counter.
final class SubmitterHandler: PollRequestHandler {
    let host: String
    let next: SharedCounter
    let count: Int
    let uidPrefix: String
    let times: PollTimes
    let done: EventLoopPromise<Void>
    private var current = 0

    init(host: String, next: SharedCounter, count: Int, uidPrefix: String, times: PollTimes, done: EventLoopPromise<Void>) {
        self.host = host
        self.next = next
        self.count = count
        self.uidPrefix = uidPrefix
        self.times = times
        self.done = done
    }

    func start(context: ChannelHandlerContext) {
        let index = next.next()
        current = index
        guard index < count else {
            done.succeed()
            context.close(promise: nil)
            return
        }
        let body = #"{"cmd":"echo","uid":"\#(uidPrefix)\#(index)","args":{"n":\#(index)}}"#
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/api/v1/tasks")
        head.headers.add(name: "Host", value: host)
        head.headers.add(name: "Content-Type", value: "application/json")
        head.headers.add(name: "Content-Length", value: String(body.utf8.count))
        let now = monotonicNanoseconds()
        times.state.withLock { $0.submitted[index] = now }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let response):
            let now = monotonicNanoseconds()
            let index = current
            times.state.withLock { state in
                if response.status.code >= 300 { state.errors += 1 } else { state.accepted[index] = now }
            }
        case .body:
            break
        case .end:
            start(context: context)
        }
    }
}

/// TaskGate long-poll: `--connections` polls parked at once, each woken by an echo task for its uid.
struct PollRun {
    let options: LoadCommand
    let target: Target

    func run() async throws -> Summary {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: options.threads)
        let probe = options.serverPid.map(ServerProbe.init(pid:))
        let count = options.connections
        let times = PollTimes(count: count)
        // A fresh uid prefix per run, so that cursor 0 means "wait" even on a durable store.
        let uidPrefix = "lp\(monotonicNanoseconds() % 1_000_000_000)-"
        let host = "\(target.host):\(target.port)"
        let rssBefore = probe?.rssKB()
        let cpuStart = probe?.cpuSeconds()

        var waiters: [EventLoopFuture<Void>] = []
        var failures = 0
        var index = 0
        while index < count {
            let upper = min(count, index + options.connectBatch)
            var batch: [EventLoopFuture<any Channel>] = []
            for poll in index..<upper {
                var head = HTTPRequestHead(
                    version: .http1_1, method: .GET, uri: "/poll?uid=\(uidPrefix)\(poll)&cursor=0&timeout=60")
                head.headers.add(name: "Host", value: host)
                let eventLoop = group.next()
                let done = eventLoop.makePromise(of: Void.self)
                waiters.append(done.futureResult)
                let handlerHead = head
                let future = ClientBootstrap(group: eventLoop)
                    .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHTTPClientHandlers()
                            try channel.pipeline.syncOperations.addHandler(
                                PollWaiterHandler(index: poll, head: handlerHead, times: times, done: done))
                        }
                    }
                    .connect(host: target.host, port: target.port)
                future.whenFailure { _ in done.succeed() }
                batch.append(future)
            }
            for future in batch {
                do { _ = try await future.get() } catch { failures += 1 }
            }
            index = upper
        }
        // Let every request reach the server and park.
        try await Task.sleep(for: .seconds(options.settle))
        let rssParked = probe?.rssKB()

        let start = monotonicNanoseconds()
        let clientStart = ownCPUSeconds()
        let next = SharedCounter()
        var submitters: [EventLoopFuture<Void>] = []
        for _ in 0..<options.submitters {
            let eventLoop = group.next()
            let done = eventLoop.makePromise(of: Void.self)
            submitters.append(done.futureResult)
            let future = ClientBootstrap(group: eventLoop)
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(
                            SubmitterHandler(host: host, next: next, count: count, uidPrefix: uidPrefix, times: times, done: done))
                    }
                }
                .connect(host: target.host, port: target.port)
            future.whenFailure { _ in done.succeed() }
        }
        // Bounded: the polls time out after 60 s on the server anyway; wait at most duration + 65 s.
        let loop = group.next()
        let finished = loop.makePromise(of: Void.self)
        EventLoopFuture.andAllComplete(submitters + waiters, on: loop).cascade(to: finished)
        loop.scheduleTask(in: .milliseconds(Int64((options.duration + 65) * 1000))) { finished.succeed() }
        try await finished.futureResult.get()
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        let cpuEnd = probe?.cpuSeconds()
        let clientCPU = ownCPUSeconds() - clientStart
        try await group.shutdownGracefully()

        var summary = Summary(
            mode: "poll", label: options.label, connections: count, connected: count - failures, seconds: seconds, completed: 0,
            errors: failures, latenciesNanos: [], serverCPUSeconds: zip(cpuStart, cpuEnd).map { $1 - $0 },
            clientCPUSeconds: clientCPU, rssBeforeKB: rssBefore, rssAfterKB: rssParked, wireBytesIn: 0, payloadBytesIn: 0,
            messagesIn: 0, deflateNegotiated: 0)
        // Latencies: the submit's 202 → the poll's answer (delivery; 0 when the answer came first, as it can: the
        // task may run before its 202 is read). Submit → answer, which adds the REST submit and the wait for a
        // pool worker, goes in the extra figures. (Events no longer carry `startedAt` to time from.)
        var submitToAnswer: [UInt64] = []
        times.state.withLock { state in
            summary.errors += state.errors
            for index in 0..<count where state.answered[index] > 0 && state.submitted[index] > 0 {
                submitToAnswer.append(state.answered[index] &- state.submitted[index])
                if state.accepted[index] > 0 {
                    summary.latenciesNanos.append(state.answered[index] > state.accepted[index] ? state.answered[index] - state.accepted[index] : 0)
                    summary.completed += 1
                } else {
                    summary.errors += 1
                }
            }
        }
        var submitted = summary
        submitted.latenciesNanos = submitToAnswer
        summary.extra = [
            ("submit_to_answer_p50_ms", submitted.percentileMillis(0.5)), ("submit_to_answer_p99_ms", submitted.percentileMillis(0.99)),
        ]
        return summary
    }
}

/// A counter the submitters share.
final class SharedCounter: Sendable {
    private let value = Atomic<Int>(0)
    func next() -> Int { value.add(1, ordering: .relaxed).oldValue }
}
