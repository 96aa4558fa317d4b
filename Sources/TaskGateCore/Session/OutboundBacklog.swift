/// How much may wait to be written to one client that is not reading, in messages and in bytes. Past either the
/// connection is closed (WebSocket 1013, SSE: the stream ends); its events stay in the log, so the client resumes
/// from its cursor. One policy for every transport that pushes.
public struct OutboundLimits: Sendable, Equatable {
    public var messages = 1024
    public var bytes = 4 * 1024 * 1024

    public init(messages: Int = 1024, bytes: Int = 4 * 1024 * 1024) {
        self.messages = messages
        self.bytes = bytes
    }
}

/// What waits for one connection's client, counted against `OutboundLimits`. Not thread-safe: each transport keeps
/// it where its writes happen (the event loop, or under the connection's lock).
public struct OutboundBacklog: Sendable {
    public let limits: OutboundLimits
    public private(set) var messages = 0
    public private(set) var bytes = 0

    public init(limits: OutboundLimits) {
        self.limits = limits
    }

    /// Counts one more waiting message of `size` bytes; `false` when that passes a limit, and the client must go.
    public mutating func admit(bytes size: Int) -> Bool {
        messages += 1
        bytes += size
        return messages <= limits.messages && bytes <= limits.bytes
    }

    /// One waiting message of `size` bytes went out.
    public mutating func written(bytes size: Int) {
        messages = max(0, messages - 1)
        bytes = max(0, bytes - size)
    }

    /// The client caught up with everything.
    public mutating func clear() {
        messages = 0
        bytes = 0
    }
}
