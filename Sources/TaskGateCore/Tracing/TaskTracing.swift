import Foundation
import Tracing

/// Writes trace context into a `[String: String]` (the W3C `traceparent` a task record keeps).
public struct DictionaryInjector: Injector {
    public init() {}
    public func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) {
        carrier[key] = value
    }
}

/// Reads trace context from a `[String: String]`.
public struct DictionaryExtractor: Extractor {
    public init() {}
    public func extract(key: String, from carrier: [String: String]) -> String? {
        carrier[key]
    }
}

/// The task spans (`task.submit`, `task.queued`, `task.run`, `task.deliver`) go to whatever tracer is in force
/// (`InstrumentationSystem.tracer`: the no-op one unless the server bootstrapped one). The trace goes from one
/// span to the next as a W3C `traceparent` string, kept in the task's record, so that a task run after a restart
/// or on another node still joins its submitter's trace.
public enum TaskTracing {
    public static let traceparentKey = "traceparent"

    /// The W3C `traceparent` of `context`'s span, or `nil` when the tracer in force writes none (the no-op one).
    public static func traceparent(of context: ServiceContext) -> String? {
        var carrier: [String: String] = [:]
        InstrumentationSystem.tracer.inject(context, into: &carrier, using: DictionaryInjector())
        guard let value = carrier[traceparentKey], W3CTraceparent.isValid(value) else { return nil }
        return value
    }

    /// The context of a `traceparent`, or `nil` when there is none or it is not a valid one (the span then starts a
    /// new trace: a bad header is never an error).
    public static func context(fromTraceparent traceparent: String?) -> ServiceContext? {
        guard let traceparent, W3CTraceparent.isValid(traceparent) else { return nil }
        var context = ServiceContext.topLevel
        InstrumentationSystem.tracer.extract([traceparentKey: traceparent], into: &context, using: DictionaryExtractor())
        return context.isEmpty ? nil : context
    }

    /// A `Date` as a tracer instant (a queued span starts when its task was created).
    static func instant(_ date: Date) -> DefaultTracerClock.Timestamp {
        let nanoseconds = max(0, date.timeIntervalSince1970 * 1_000_000_000)
        return DefaultTracerClock.Timestamp(nanosecondsSinceEpoch: nanoseconds < 1.8e19 ? UInt64(nanoseconds) : 0)
    }
}
