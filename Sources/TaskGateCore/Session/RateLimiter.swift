import Synchronization

/// A token bucket: `perSecond` messages a second on average, bursts of up to twice that.
public struct RateLimiter: Sendable {
    private let perSecond: Double
    private let capacity: Double
    private var tokens: Double
    public private(set) var last = ContinuousClock.now

    public init(perSecond: Int) {
        self.perSecond = Double(perSecond)
        capacity = Double(perSecond * 2)
        tokens = capacity
    }

    public mutating func allow(now: ContinuousClock.Instant = .now) -> Bool {
        let elapsed = now - last
        last = now
        tokens = min(capacity, tokens + perSecond * (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18))
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}

/// One bucket per uid, for a transport without a connection to keep it on (`POST /poll`: each message is a
/// request of its own). Buckets idle long enough to be full again are dropped, so the table stays small.
public final class RateLimiters: Sendable {
    private let perSecond: Int
    private let buckets = Mutex<[String: RateLimiter]>([:])

    public init(perSecond: Int) {
        self.perSecond = perSecond
    }

    public func allow(_ uid: String) -> Bool {
        buckets.withLock { buckets in
            let now = ContinuousClock.now
            if buckets.count > 10_000 {
                buckets = buckets.filter { now - $0.value.last < .seconds(2) }
            }
            return buckets[uid, default: RateLimiter(perSecond: perSecond)].allow(now: now)
        }
    }
}
