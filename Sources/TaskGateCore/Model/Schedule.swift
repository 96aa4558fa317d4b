import Foundation

/// A recurring task from the config file's `schedules`: `cmd` with `args` at every tick of `cron` in `timezone`.
public struct Schedule: Sendable, Equatable, Decodable {
    /// What to do about ticks that passed while no node was running.
    public enum Missed: String, Sendable, Decodable {
        /// They are dropped; the next tick runs on time.
        case skip
        /// One task runs at start for all of them.
        case runOnce = "run_once"
    }

    public var name: String
    public var cmd: String
    public var args: [String: JSONValue]
    public var cron: CronExpression
    public var timezone: TimeZone
    /// The zone as the config names it (Foundation calls UTC "GMT").
    public var timezoneName: String
    public var missed: Missed
    /// Who receives the tick tasks' events; `nil`: a task only the admin sees.
    public var uid: String?

    public init(
        name: String, cmd: String, args: [String: JSONValue] = [:], cron: CronExpression, timezone: TimeZone = .gmt,
        missed: Missed = .skip, uid: String? = nil
    ) {
        self.name = name
        self.cmd = cmd
        self.args = args
        self.cron = cron
        self.timezone = timezone
        self.timezoneName = timezone == .gmt ? "UTC" : timezone.identifier
        self.missed = missed
        self.uid = uid
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case name, cmd, args, cron, timezone, missed, uid }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(allowed: CodingKeys.allCases.map(\.rawValue))
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let path = container.codingPath
        name = try container.decode(String.self, forKey: .name)
        guard Self.isValidName(name) else {
            throw ConfigError.invalid(path: path + [CodingKeys.name], "must be 1-64 characters of A-Z a-z 0-9 . _ -")
        }
        cmd = try container.decode(String.self, forKey: .cmd)
        args = try container.decodeIfPresent([String: JSONValue].self, forKey: .args) ?? [:]
        let cronText = try container.decode(String.self, forKey: .cron)
        do {
            cron = try CronExpression(cronText)
        } catch {
            throw ConfigError.invalid(path: path + [CodingKeys.cron], error.description)
        }
        let zoneName = try container.decodeIfPresent(String.self, forKey: .timezone) ?? "UTC"
        guard let zone = TimeZone(identifier: zoneName) else {
            throw ConfigError.invalid(path: path + [CodingKeys.timezone], "'\(zoneName)' is not an IANA time zone (e.g. Europe/Paris)")
        }
        timezone = zone
        timezoneName = zoneName
        missed = try container.decodeIfPresent(Missed.self, forKey: .missed) ?? .skip
        uid = try container.decodeIfPresent(String.self, forKey: .uid)
        if let uid, !Identifier.isValidUID(uid) {
            throw ConfigError.invalid(path: path + [CodingKeys.uid], "must be 1-128 characters of A-Z a-z 0-9 . _ : @ -")
        }
        guard cron.next(after: Date(), in: timezone) != nil else {
            throw ConfigError.invalid(path: path + [CodingKeys.cron], "never matches a date (e.g. 30 February)")
        }
    }

    static func isValidName(_ name: String) -> Bool {
        name.utf8.count <= 64 && Identifier.isValid(name, extra: "._-")
    }

    /// The client id of the task for the tick at `tick`: the same on every node, so the store keeps only one.
    public func taskID(forTick tick: Date) -> String {
        "schedule:\(name):\(Int64(tick.timeIntervalSince1970.rounded(.down)))"
    }

    public func nextTick(after date: Date) -> Date? {
        cron.next(after: date, in: timezone)
    }
}
