import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A server process seen through /proc: CPU time (utime + stime) and resident memory.
struct ServerProbe: Sendable {
    let pid: Int32

    /// utime + stime of the whole process (all threads), in seconds.
    func cpuSeconds() -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        // Fields after "(comm)": state is field 3; utime and stime are fields 14 and 15.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let utime = Double(fields[11]), let stime = Double(fields[12]) else { return nil }
        return (utime + stime) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// VmRSS in KB.
    func rssKB() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        }
        return nil
    }
}

/// This process's own CPU time, to show the client is not what is measured.
func ownCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec)
        + Double(usage.ru_stime.tv_usec) / 1e6
}

func monotonicNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

/// What every connection records, shared by the event loops (one uncontended lock per connection).
final class ConnectionStats: Sendable {
    struct State {
        var latenciesNanos: [UInt64] = []
        var completed = 0
        var errors = 0
        var wireBytesIn = 0
        var payloadBytesIn = 0
        var messagesIn = 0
    }

    let state = Mutex(State())

    func record(latency: UInt64) {
        state.withLock {
            $0.latenciesNanos.append(latency)
            $0.completed += 1
        }
    }
}

/// Which phase the whole run is in: connections only count what happens while `measuring`.
final class RunPhase: Sendable {
    enum Phase: Int { case warmup = 0, measuring = 1, stopping = 2 }
    private let value = Atomic<Int>(Phase.warmup.rawValue)

    var current: Phase { Phase(rawValue: value.load(ordering: .acquiring)) ?? .stopping }
    func set(_ phase: Phase) { value.store(phase.rawValue, ordering: .releasing) }
}

/// The figures of one run.
struct Summary {
    var mode: String
    var label: String
    var connections: Int
    var connected: Int
    var seconds: Double
    var completed: Int
    var errors: Int
    var latenciesNanos: [UInt64]
    var serverCPUSeconds: Double?
    var clientCPUSeconds: Double
    var rssBeforeKB: Int?
    var rssAfterKB: Int?
    var wireBytesIn: Int
    var payloadBytesIn: Int
    var messagesIn: Int
    var deflateNegotiated: Int
    /// Mode-specific figures.
    var extra: [(String, Double?)] = []

    var perSecond: Double { seconds > 0 ? Double(completed) / seconds : 0 }
    var serverCPUMicrosPerOp: Double? {
        guard let serverCPUSeconds, completed > 0 else { return nil }
        return serverCPUSeconds * 1e6 / Double(completed)
    }
    var rssPerConnectionKB: Double? {
        guard let rssBeforeKB, let rssAfterKB, connected > 0 else { return nil }
        return Double(rssAfterKB - rssBeforeKB) / Double(connected)
    }

    func percentileMillis(_ fraction: Double) -> Double? {
        guard !latenciesNanos.isEmpty else { return nil }
        let sorted = latenciesNanos.sorted()
        let index = min(sorted.count - 1, Int((Double(sorted.count) * fraction).rounded(.up)) - 1)
        return Double(sorted[max(0, index)]) / 1e6
    }

    func json() -> String {
        func number(_ value: Double?) -> String {
            guard let value, value.isFinite else { return "null" }
            return String(format: "%.3f", value)
        }
        func integer(_ value: Int?) -> String { value.map(String.init) ?? "null" }
        let fields: [(String, String)] = [
            ("mode", "\"\(mode)\""), ("label", "\"\(label)\""), ("connections", "\(connections)"),
            ("connected", "\(connected)"), ("seconds", number(seconds)), ("completed", "\(completed)"),
            ("errors", "\(errors)"), ("per_second", number(perSecond)), ("p50_ms", number(percentileMillis(0.50))),
            ("p99_ms", number(percentileMillis(0.99))), ("server_cpu_s", number(serverCPUSeconds)),
            ("server_cpu_us_per_op", number(serverCPUMicrosPerOp)), ("client_cpu_s", number(clientCPUSeconds)),
            ("rss_before_kb", integer(rssBeforeKB)), ("rss_after_kb", integer(rssAfterKB)),
            ("rss_per_connection_kb", number(rssPerConnectionKB)), ("wire_bytes_in", "\(wireBytesIn)"),
            ("payload_bytes_in", "\(payloadBytesIn)"), ("messages_in", "\(messagesIn)"),
            ("deflate_negotiated", "\(deflateNegotiated)"),
        ] + extra.map { ($0.0, number($0.1)) }
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    func table() -> String {
        func show(_ value: Double?, _ format: String = "%.1f") -> String { value.map { String(format: format, $0) } ?? "-" }
        let rows: [(String, String)] = [
            ("mode", mode + (label.isEmpty ? "" : " (\(label))")),
            ("connections", "\(connected)/\(connections)"),
            ("measured", show(seconds, "%.2f s")),
            ("completed", "\(completed) (\(errors) errors)"),
            ("per second", show(perSecond, "%.0f")),
            ("latency p50 / p99", "\(show(percentileMillis(0.5), "%.3f")) / \(show(percentileMillis(0.99), "%.3f")) ms"),
            ("server CPU per op", show(serverCPUMicrosPerOp, "%.2f µs")),
            ("client CPU", show(clientCPUSeconds, "%.2f s")),
            ("server RSS", "\(rssBeforeKB.map(String.init) ?? "-") → \(rssAfterKB.map(String.init) ?? "-") KB"),
            ("RSS per connection", show(rssPerConnectionKB, "%.2f KB")),
            ("bytes in (wire / payload)", "\(wireBytesIn) / \(payloadBytesIn)"),
            ("deflate negotiated", "\(deflateNegotiated)"),
        ] + extra.map { ($0.0.replacingOccurrences(of: "_", with: " "), show($0.1, "%.3f")) }
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n")
    }
}
