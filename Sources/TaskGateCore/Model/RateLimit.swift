import Foundation

/// A handler's start rate, written `"50/s"`, `"300/m"` or `"1000/h"` in the config file.
public struct RateLimit: Sendable, Equatable, CustomStringConvertible {
    public var count: Int
    public var per: Duration

    public init(count: Int, per: Duration) {
        self.count = count
        self.per = per
    }

    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let count = Int(parts[0].trimmingCharacters(in: .whitespaces)), (1...100_000).contains(count)
        else { return nil }
        switch parts[1].trimmingCharacters(in: .whitespaces) {
        case "s": per = .seconds(1)
        case "m": per = .seconds(60)
        case "h": per = .seconds(3600)
        default: return nil
        }
        self.count = count
    }

    /// The time between two starts: the limit spaces them evenly rather than allowing bursts.
    public var interval: Duration { per / count }

    public var description: String {
        let unit = per == .seconds(1) ? "s" : per == .seconds(60) ? "m" : "h"
        return "\(count)/\(unit)"
    }
}
