import Foundation
import InMemoryTracing
import Logging
import Synchronization
import Testing
import Tracing

@testable import TaskGateCore

/// An in-memory tracer (`InMemorySpan`s, as `InMemoryTracer` makes them) with W3C ids and a `traceparent`
/// propagator, as an OpenTelemetry tracer would propagate, that tells waiters when a span ends. Used through
/// `withTracer`, which scopes it to one test's tasks (no global bootstrap).
struct W3CInMemoryTracer: Tracer {
    private let recorded = FinishedSpans()

    func startSpan<Instant: TracerInstant>(
        _ operationName: String, context: @autoclosure () -> ServiceContext, ofKind kind: SpanKind,
        at instant: @autoclosure () -> Instant, function: String, file fileID: String, line: UInt
    ) -> InMemorySpan {
        let parent = context()
        // A child of the context's span, in its trace; else the root of a new trace.
        let spanContext = InMemorySpanContext(
            traceID: parent.inMemorySpanContext?.traceID ?? randomHex(bytes: 16), spanID: randomHex(bytes: 8),
            parentSpanID: parent.inMemorySpanContext?.spanID)
        return InMemorySpan(
            operationName: operationName, context: parent, spanContext: spanContext, kind: kind, startInstant: instant()
        ) { [recorded] finished in recorded.add(finished) }
    }

    func forceFlush() {}

    func inject<Carrier, Inject: Injector>(_ context: ServiceContext, into carrier: inout Carrier, using injector: Inject)
    where Inject.Carrier == Carrier {
        guard let span = context.inMemorySpanContext else { return }
        injector.inject("00-\(span.traceID)-\(span.spanID)-01", forKey: "traceparent", into: &carrier)
    }

    func extract<Carrier, Extract: Extractor>(_ carrier: Carrier, into context: inout ServiceContext, using extractor: Extract)
    where Extract.Carrier == Carrier {
        guard let value = extractor.extract(key: "traceparent", from: carrier) else { return }
        let parts = value.split(separator: "-")
        guard parts.count == 4 else { return }
        context.inMemorySpanContext = InMemorySpanContext(traceID: String(parts[1]), spanID: String(parts[2]), parentSpanID: nil)
    }

    var finished: [FinishedInMemorySpan] { recorded.all }

    /// Waits until a span named `name` has ended, looking again as each span ends.
    func span(_ name: String, timeout: Duration = .seconds(10)) async throws -> FinishedInMemorySpan {
        var found: FinishedInMemorySpan?
        try await waitUntil("the span \(name) to end", timeout: timeout, on: recorded.ended) {
            found = finished.first { $0.operationName == name }
            return found != nil
        }
        return found!
    }
}

/// The spans that ended, in order; `ended` is bumped as each is added.
private final class FinishedSpans: Sendable {
    private let spans = Mutex<[FinishedInMemorySpan]>([])
    let ended = ChangeSignal()

    func add(_ span: FinishedInMemorySpan) {
        spans.withLock { $0.append(span) }
        ended.bump()
    }

    var all: [FinishedInMemorySpan] { spans.withLock { $0 } }
}

func randomHex(bytes: Int) -> String {
    var generator = SystemRandomNumberGenerator()
    return (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 1...255, using: &generator)) }.joined()
}

/// Returns what its task context says about the trace.
struct TraceparentHandler: TaskHandler {
    let name = "traced"
    let summary = "returns its traceparent"
    func run(_ context: TaskContext) async throws -> JSONValue {
        .object(["traceparent": context.traceparent.map { .string($0) } ?? .null])
    }
}

extension Gateway {
    static func tracedForTests() throws -> Gateway {
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        return Gateway(
            registry: try SwiftHandlerRegistry { [TraceparentHandler()] + BuiltinHandlers.all() }, logger: logger)
    }
}

@Suite("Tracing", .timeLimit(.minutes(1)))
struct TracingTests {
    static let callerTrace = "0af7651916cd43dd8448eb211c80319c"
    static let callerSpan = "b7ad6b7169203331"
    static let caller = "00-\(callerTrace)-\(callerSpan)-01"

    @Test func submitQueuedRunAndDeliverFormOneTrace() async throws {
        let tracer = W3CInMemoryTracer()
        try await withTracer(tracer) {
            let gateway = try Gateway.tracedForTests()
            let submission = try await gateway.submit(cmd: "traced", args: [:], uid: "u1", traceparent: Self.caller)
            let done = try await gateway.finished(submission.task.id)
            #expect(done.status == .succeeded)

            let submit = try await tracer.span("task.submit")
            let queued = try await tracer.span("task.queued")
            let run = try await tracer.span("task.run")
            let deliver = try await tracer.span("task.deliver")
            for span in [submit, queued, run, deliver] { #expect(span.traceID == Self.callerTrace) }
            #expect(submit.parentSpanID == Self.callerSpan)
            #expect(queued.parentSpanID == submit.spanID)
            #expect(run.parentSpanID == submit.spanID)
            #expect(deliver.parentSpanID == run.spanID)

            // The record keeps the submit span; the handler sees the run span.
            #expect(done.traceparent == "00-\(Self.callerTrace)-\(submit.spanID)-01")
            #expect(done.result == ["traceparent": .string("00-\(Self.callerTrace)-\(run.spanID)-01")])

            #expect(submit.attributes["taskgate.task.id"]?.toSpanAttribute() == SpanAttribute.string(submission.task.id))
            #expect(submit.attributes["taskgate.task.cmd"]?.toSpanAttribute() == SpanAttribute.string("traced"))
            #expect(submit.attributes["taskgate.uid"]?.toSpanAttribute() == SpanAttribute.string("u1"))
            #expect(run.attributes["taskgate.task.attempt"]?.toSpanAttribute() == SpanAttribute.int64(1))
            #expect(run.attributes["taskgate.task.cmd"]?.toSpanAttribute() == SpanAttribute.string("traced"))
            #expect(run.status == nil)
            // Queued from the task's creation to its start.
            #expect(queued.startInstant.nanosecondsSinceEpoch <= run.startInstant.nanosecondsSinceEpoch)
            let created = UInt64(submission.task.createdAt.timeIntervalSince1970 * 1e9)
            #expect(queued.startInstant.nanosecondsSinceEpoch / 1_000_000 == created / 1_000_000)
        }
    }

    @Test func withoutACallerTheSubmitSpanIsAChildOfTheCurrentContext() async throws {
        let tracer = W3CInMemoryTracer()
        try await withTracer(tracer) {
            let gateway = try Gateway.tracedForTests()
            let request = tracer.startSpan("POST /api/v1/tasks", context: .topLevel)
            let submission = try await ServiceContext.withValue(request.context) {
                try await gateway.submit(cmd: "traced", args: [:], uid: nil)
            }
            request.end()
            _ = try await gateway.finished(submission.task.id)
            let submit = try await tracer.span("task.submit")
            #expect(submit.parentSpanID == request.context.inMemorySpanContext?.spanID)
            #expect(submit.traceID == request.context.inMemorySpanContext?.traceID)
        }
    }

    @Test func aFailedRunIsAnErrorSpan() async throws {
        let tracer = W3CInMemoryTracer()
        try await withTracer(tracer) {
            let gateway = try Gateway.tracedForTests()
            let submission = try await gateway.submit(cmd: "fail", args: ["message": "nope"], uid: "u1", traceparent: Self.caller)
            #expect(try await gateway.finished(submission.task.id).status == .failed)
            let run = try await tracer.span("task.run")
            #expect(run.status?.code == .error)
        }
    }

    @Test func anInvalidTraceparentStartsANewTrace() async throws {
        let tracer = W3CInMemoryTracer()
        try await withTracer(tracer) {
            let gateway = try Gateway.tracedForTests()
            let submission = try await gateway.submit(cmd: "traced", args: [:], uid: "u1", traceparent: "00-nothex-0000-01")
            _ = try await gateway.finished(submission.task.id)
            let submit = try await tracer.span("task.submit")
            #expect(submit.parentSpanID == nil)
            #expect(submission.task.traceparent == "00-\(submit.traceID)-\(submit.spanID)-01")
        }
    }

    @Test func withoutATracerNothingIsKept() async throws {
        let gateway = try Gateway.tracedForTests()
        let submission = try await gateway.submit(cmd: "traced", args: [:], uid: "u1", traceparent: Self.caller)
        let done = try await gateway.finished(submission.task.id)
        #expect(done.traceparent == nil)
        #expect(done.result == ["traceparent": .null])
    }

    @Test func aWebSocketMessageCarriesItsTraceparent() async throws {
        let tracer = W3CInMemoryTracer()
        try await withTracer(tracer) {
            let gateway = try Gateway.tracedForTests()
            let session = Session(uid: "u1", isAdmin: false, transport: .webSocket, gateway: gateway)
            let replies = RepliesBox()
            await session.handle(Array(#"{"cmd":"traced","ref":"r1","traceparent":"\#(Self.caller)"}"#.utf8)) { replies.add($0) }
            let id = try #require(replies.first?.task?.id)
            _ = try await gateway.finished(id)
            let submit = try await tracer.span("task.submit")
            #expect(submit.traceID == Self.callerTrace)
            #expect(submit.parentSpanID == Self.callerSpan)
        }
    }

    @Test func clientMessagesKeepOnlyAValidTraceparent() throws {
        func decoded(_ text: String) throws -> ClientMessage { try ClientMessage.decode(Array(text.utf8)).get() }
        #expect(try decoded(#"{"cmd":"echo","traceparent":"\#(Self.caller)"}"#).traceparent == Self.caller)
        #expect(try decoded(#"{"cmd":"echo","traceparent":"garbage"}"#).traceparent == nil)
        #expect(try decoded(#"{"cmd":"echo","traceparent":42}"#).traceparent == nil)
        #expect(try decoded(#"{"cmd":"echo"}"#).traceparent == nil)
    }

    @Test func traceparentValidation() {
        #expect(W3CTraceparent.isValid(Self.caller))
        #expect(W3CTraceparent.isValid("01-\(Self.callerTrace)-\(Self.callerSpan)-01-future"))
        #expect(!W3CTraceparent.isValid("00-\(Self.callerTrace)-\(Self.callerSpan)-01-extra"))
        #expect(!W3CTraceparent.isValid("ff-\(Self.callerTrace)-\(Self.callerSpan)-01"))
        #expect(!W3CTraceparent.isValid("00-\(String(repeating: "0", count: 32))-\(Self.callerSpan)-01"))
        #expect(!W3CTraceparent.isValid("00-\(Self.callerTrace)-0000000000000000-01"))
        #expect(!W3CTraceparent.isValid("00-\(Self.callerTrace.uppercased())-\(Self.callerSpan)-01"))
        #expect(!W3CTraceparent.isValid(""))
        #expect(!W3CTraceparent.isValid("00-\(Self.callerTrace)-\(Self.callerSpan)"))
    }

    @Test func theTraceparentIsStoredWithTheTask() async throws {
        var record = TaskRecord(id: "t-1", cmd: "echo", uid: "u", args: [:], traceparent: Self.caller)
        record.createdAt = Date(timeIntervalSince1970: 1_764_000_000)
        let json = WireJSON.encode(record)
        #expect(json.contains(#""traceparent":"\#(Self.caller)""#))
        #expect(try WireJSON.decoder.decode(TaskRecord.self, from: Data(json.utf8)) == record)
        // Records written before the field existed read back without it.
        let old = json.replacingOccurrences(of: #","traceparent":"\#(Self.caller)""#, with: "")
        #expect(try WireJSON.decoder.decode(TaskRecord.self, from: Data(old.utf8)).traceparent == nil)
        // And it survives a restart: the run after it joins the same trace.
        let path = temporaryDatabasePath()
        do {
            let store = try SQLiteTaskStore(path: path)
            _ = try await store.insert(record)
        }
        #expect(try await SQLiteTaskStore(path: path).task(id: "t-1")?.traceparent == Self.caller)
    }
}

/// Collects a session's replies.
final class RepliesBox: Sendable {
    private let replies = Mutex<[ServerMessage]>([])
    func add(_ reply: ServerMessage) { replies.withLock { $0.append(reply) } }
    var first: ServerMessage? { replies.withLock { $0.first } }
}
