import Foundation

public enum TaskStatus: String, Sendable, Codable, CaseIterable {
    /// Waiting for its `runAt` (a delay, a time, a recurring schedule); it goes to `running` when a worker takes it.
    case scheduled
    case queued
    case running
    case succeeded
    case failed
    case cancelled
    case timedOut = "timed_out"

    public var isFinal: Bool {
        switch self {
        case .scheduled, .queued, .running: false
        case .succeeded, .failed, .cancelled, .timedOut: true
        }
    }
}

/// One task as clients, the admin API and the store see it.
public struct TaskRecord: Sendable, Codable, Equatable {
    public var id: String
    public var cmd: String
    public var uid: String?
    /// As the client wrote them (or as the server wrote them out once, see `JSONText`).
    public var args: JSONText
    public var status: TaskStatus
    public var progress: Double
    public var result: JSONText?
    public var error: String?
    /// How many times a worker has started this task (retries and restarts add to it).
    public var attempts: Int
    public var createdAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    /// The node that last ran it (a cluster; `nil` on a single node and before it first runs).
    public var node: String?
    /// The W3C `traceparent` of the span that submitted it, when tracing is on: its run (after a restart, or on
    /// another node) joins the submitter's trace. `nil` when tracing is off.
    public var traceparent: String?
    /// 0–9, 0 first (as in Oban and River); fair share applies within one priority.
    public var priority: Int
    public static let priorities = 0...9
    /// When a delayed task is due; `nil`: as soon as a worker is free.
    public var runAt: Date?
    /// The recurring schedule that made this task, if one did.
    public var schedule: String?

    public init(
        id: String, cmd: String, uid: String?, args: JSONText, status: TaskStatus = .queued, progress: Double = 0,
        result: JSONText? = nil, error: String? = nil, attempts: Int = 0, createdAt: Date = Date(), startedAt: Date? = nil,
        finishedAt: Date? = nil, traceparent: String? = nil, priority: Int = 0, runAt: Date? = nil, schedule: String? = nil
    ) {
        self.id = id
        self.cmd = cmd
        self.uid = uid
        self.args = args
        self.status = status
        self.progress = progress
        self.result = result
        self.error = error
        self.attempts = attempts
        self.createdAt = createdAt
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.traceparent = traceparent
        self.priority = priority
        self.runAt = runAt
        self.schedule = schedule
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        cmd = try container.decode(String.self, forKey: .cmd)
        uid = try container.decodeIfPresent(String.self, forKey: .uid)
        args = try container.decode(JSONText.self, forKey: .args)
        status = try container.decode(TaskStatus.self, forKey: .status)
        progress = try container.decode(Double.self, forKey: .progress)
        result = try container.decodeIfPresent(JSONText.self, forKey: .result)
        if result?.isNull == true { result = nil }
        error = try container.decodeIfPresent(String.self, forKey: .error)
        attempts = try container.decodeIfPresent(Int.self, forKey: .attempts) ?? 0
        createdAt = try container.decode(Date.self, forKey: .createdAt)
        startedAt = try container.decodeIfPresent(Date.self, forKey: .startedAt)
        finishedAt = try container.decodeIfPresent(Date.self, forKey: .finishedAt)
        node = try container.decodeIfPresent(String.self, forKey: .node)
        traceparent = try container.decodeIfPresent(String.self, forKey: .traceparent)
        priority = try container.decodeIfPresent(Int.self, forKey: .priority) ?? 0
        runAt = try container.decodeIfPresent(Date.self, forKey: .runAt)
        schedule = try container.decodeIfPresent(String.self, forKey: .schedule)
    }

    // Explicit keys so that `nil` fields are written as `null`: clients can rely on every field being present.
    enum CodingKeys: String, CodingKey {
        case id, cmd, uid, args, status, progress, result, error, attempts, createdAt, startedAt, finishedAt, node, traceparent, priority, runAt,
            schedule
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(all: [
            .id: id, .cmd: cmd, .uid: uid, .args: args, .status: status, .progress: progress,
            .result: result ?? JSONText.null, .error: error, .attempts: attempts, .createdAt: createdAt,
            .startedAt: startedAt, .finishedAt: finishedAt, .node: node, .traceparent: traceparent,
            .priority: priority, .runAt: runAt, .schedule: schedule
        ])
    }
}

/// Rules for the identifiers clients may choose.
public enum Identifier {
    /// Task ids and user ids: 1–128 characters of a small, URL- and log-safe alphabet.
    public static func isValidTaskID(_ value: String) -> Bool {
        isValid(value, extra: "._:-")
    }

    public static func isValidUID(_ value: String) -> Bool {
        isValid(value, extra: "._:@-")
    }

    static func isValid(_ value: String, extra: String) -> Bool {
        let utf8 = value.utf8
        guard (1...128).contains(utf8.count) else { return false }
        let extraBytes = Set(extra.utf8)
        return utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || extraBytes.contains(byte)
        }
    }
}
