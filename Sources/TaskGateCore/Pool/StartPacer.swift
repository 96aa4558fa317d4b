/// Spaces a handler's starts `interval` apart on this node (a token bucket that holds one token).
struct StartPacer {
    private var nextAllowed: [String: ContinuousClock.Instant] = [:]

    /// When `cmd` may start next (`nil`: now).
    func notBefore(_ cmd: String, now: ContinuousClock.Instant) -> ContinuousClock.Instant? {
        guard let next = nextAllowed[cmd], next > now else { return nil }
        return next
    }

    mutating func started(_ cmd: String, limit: RateLimit?, now: ContinuousClock.Instant) {
        guard let limit else { return }
        // From the later of now and the slot it used, so an idle handler does not bank starts.
        let slot = max(nextAllowed[cmd] ?? now, now)
        nextAllowed[cmd] = slot + limit.interval
    }

    /// Commands held back at `now`, and when the first of them may start.
    func blocked(now: ContinuousClock.Instant) -> (commands: [String], until: ContinuousClock.Instant?) {
        let held = nextAllowed.filter { $0.value > now }
        return (held.keys.sorted(), held.values.min())
    }
}
