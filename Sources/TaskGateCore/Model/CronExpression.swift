import Foundation

/// A cron expression: five fields (minute hour day-of-month month day-of-week) as in Vixie cron, or six with
/// seconds first (`*/1 * * * * *`), or a macro (`@daily`). Fields take `*`, `a`, `a-b`, lists, `/step`, and names
/// for months (JAN–DEC) and weekdays (SUN–SAT, 0 and 7 both Sunday). As in Vixie cron, when both day fields are
/// restricted a day matching either runs.
public struct CronExpression: Sendable, Equatable, CustomStringConvertible {
    public let description: String
    let seconds: Set<Int>
    let minutes: Set<Int>
    let hours: Set<Int>
    let days: Set<Int>
    let months: Set<Int>
    /// 0 is Sunday.
    let weekdays: Set<Int>
    let daysRestricted: Bool
    let weekdaysRestricted: Bool

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    static let macros = [
        "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
        "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
    ]
    static let monthNames = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    static let weekdayNames = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]

    public init(_ text: String) throws(ParseError) {
        description = text
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let expanded = Self.macros[trimmed.lowercased()] ?? trimmed
        var fields = expanded.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        if fields.count == 5 { fields.insert("0", at: 0) }
        guard fields.count == 6 else {
            throw ParseError(description: "needs 5 fields (minute hour day month weekday), 6 with seconds first, or a macro such as @daily")
        }
        seconds = try Self.field(fields[0], "second", 0...59)
        minutes = try Self.field(fields[1], "minute", 0...59)
        hours = try Self.field(fields[2], "hour", 0...23)
        days = try Self.field(fields[3], "day of month", 1...31)
        months = try Self.field(fields[4], "month", 1...12, names: Self.monthNames, firstName: 1)
        weekdays = Set(try Self.field(fields[5], "day of week", 0...7, names: Self.weekdayNames, firstName: 0).map { $0 % 7 })
        daysRestricted = !fields[3].hasPrefix("*") && fields[3] != "?"
        weekdaysRestricted = !fields[5].hasPrefix("*") && fields[5] != "?"
    }

    private static func field(
        _ text: String, _ name: String, _ range: ClosedRange<Int>, names: [String] = [], firstName: Int = 0
    ) throws(ParseError) -> Set<Int> {
        func value(_ token: Substring) throws(ParseError) -> Int {
            if let number = Int(token), range.contains(number) { return number }
            if let index = names.firstIndex(of: token.uppercased()) { return index + firstName }
            throw ParseError(description: "'\(token)' is not a valid \(name) (\(range.lowerBound)-\(range.upperBound))")
        }
        var result = Set<Int>()
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = item.split(separator: "/", omittingEmptySubsequences: false)
            guard (1...2).contains(parts.count), !parts[0].isEmpty else {
                throw ParseError(description: "'\(item)' is not a valid \(name) item")
            }
            var step = 1
            if parts.count == 2 {
                guard let given = Int(parts[1]), given >= 1, given <= range.count else {
                    throw ParseError(description: "'\(parts[1])' is not a valid step for the \(name)")
                }
                step = given
            }
            let bounds: ClosedRange<Int>
            if parts[0] == "*" || parts[0] == "?" {
                bounds = range
            } else if let dash = parts[0].firstIndex(of: "-") {
                let low = try value(parts[0][..<dash])
                let high = try value(parts[0][parts[0].index(after: dash)...])
                guard low <= high else { throw ParseError(description: "the \(name) range '\(parts[0])' runs backwards") }
                bounds = low...high
            } else {
                let start = try value(parts[0])
                bounds = start...(parts.count == 2 ? range.upperBound : start)
            }
            result.formUnion(stride(from: bounds.lowerBound, through: bounds.upperBound, by: step))
        }
        return result
    }

    /// The first time strictly after `date` that matches, in `zone`; `nil` if none within eight years (30 February).
    public func next(after date: Date, in zone: TimeZone) -> Date? {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        var candidate = Date(timeIntervalSince1970: (date.timeIntervalSince1970 + 1).rounded(.down))
        let limit = date.addingTimeInterval(8 * 366 * 86_400)
        while candidate < limit {
            let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: candidate)
            guard let year = parts.year, let month = parts.month, let day = parts.day, let hour = parts.hour,
                let minute = parts.minute, let second = parts.second, let weekday = parts.weekday
            else { return nil }
            // Each step moves forward in absolute time, so repeated or skipped local hours (DST) cannot loop.
            let next: Date?
            if !months.contains(month) {
                next = calendar.date(from: DateComponents(year: month == 12 ? year + 1 : year, month: month % 12 + 1, day: 1))
            } else if !dayMatches(day: day, weekday: weekday - 1) {
                next = calendar.date(byAdding: .day, value: 1, to: calendar.startOfDay(for: candidate))
            } else if !hours.contains(hour) {
                next = candidate.addingTimeInterval(Double(3600 - minute * 60 - second))
            } else if !minutes.contains(minute) {
                next = candidate.addingTimeInterval(Double(60 - second))
            } else if !seconds.contains(second) {
                next = candidate.addingTimeInterval(1)
            } else {
                return candidate
            }
            guard let next else { return nil }
            candidate = max(next, candidate.addingTimeInterval(1))
        }
        return nil
    }

    private func dayMatches(day: Int, weekday: Int) -> Bool {
        switch (daysRestricted, weekdaysRestricted) {
        case (true, true): days.contains(day) || weekdays.contains(weekday)
        case (true, false): days.contains(day)
        case (false, true): weekdays.contains(weekday)
        case (false, false): true
        }
    }
}
