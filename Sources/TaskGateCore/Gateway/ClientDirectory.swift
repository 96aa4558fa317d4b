import Foundation
import Synchronization

/// Who is connected, on which transport. WebSocket clients are listed while their socket is open; long-poll
/// clients while a poll is waiting or for `longPollLinger` after their last poll (they reconnect between polls).
public final class ClientDirectory: Sendable {
    private struct LongPollClient {
        var info: ClientInfo
        var lastSeen: ContinuousClock.Instant
        var waiting = 0
    }

    private struct State {
        var sockets: [String: ClientInfo] = [:]
        /// Places held by `reserveConnection` for connections being set up, by connection id: uid and when.
        var reserved: [String: (uid: String, at: ContinuousClock.Instant)] = [:]
        var polls: [String: LongPollClient] = [:]
        var nextID: UInt64 = 0
        /// Bumped on every connect and disconnect, so a cluster node republishes its list only when it changed.
        var version: UInt64 = 0
    }

    private let state = Mutex(State())
    public let longPollLinger: Duration
    /// Stamped on every client listed here (a cluster node's id).
    public let node: String?

    public init(longPollLinger: Duration = .seconds(30), node: String? = nil) {
        self.longPollLinger = longPollLinger
        self.node = node
    }

    public var version: UInt64 { state.withLock { $0.version } }

    /// A WebSocket or SSE connection being admitted: checks the limits and holds its place in one step, so that
    /// concurrent upgrades cannot all pass the check before any of them is counted. Returns the connection's id,
    /// for `add`. A place never taken up (the client went away during the upgrade) lapses after `reservationLifetime`.
    public func reserveConnection(uid: String, maxPerUID: Int, maxTotal: Int) throws(GatewayError) -> String {
        let outcome = state.withLock { state -> Result<String, GatewayError> in
            let cutoff = ContinuousClock.now - Self.reservationLifetime
            state.reserved = state.reserved.filter { $0.value.at > cutoff }
            let all = state.sockets.count + state.reserved.count
            guard all < maxTotal else {
                return .failure(GatewayError(.unavailable, "the server holds its maximum of \(maxTotal) connections; try again later"))
            }
            let mine = state.sockets.values.count { $0.uid == uid } + state.reserved.values.count { $0.uid == uid }
            guard mine < maxPerUID else {
                return .failure(GatewayError(.tooManyRequests, "uid '\(uid)' already has \(maxPerUID) connections"))
            }
            state.nextID += 1
            let id = "c-\(state.nextID)"
            state.reserved[id] = (uid, .now)
            return .success(id)
        }
        return try outcome.get()
    }

    static let reservationLifetime = Duration.seconds(10)

    /// Lists a connection (taking up its reserved place, if it had one).
    public func add(_ client: ClientInfo) {
        var client = client
        client.node = node
        state.withLock { [client] state in
            state.reserved[client.id] = nil
            state.sockets[client.id] = client
            state.version += 1
        }
    }

    /// Unlists a connection, or gives back its reserved place.
    public func remove(id: String) {
        state.withLock { state in
            state.reserved[id] = nil
            if state.sockets.removeValue(forKey: id) != nil { state.version += 1 }
        }
    }

    /// Marks the start of a long-poll request; returns a token for `endPoll`.
    public func beginPoll(uid: String, remote: String?, admin: Bool) -> String {
        let key = "lp:\(uid)@\(remote.map(Self.host(of:)) ?? "?")"
        state.withLock { state in
            let now = ContinuousClock.now
            if state.polls[key] == nil {
                state.nextID += 1
                let info = ClientInfo(
                    id: "p-\(state.nextID)", uid: uid, transport: .longPoll, remote: remote, admin: admin, node: node)
                state.polls[key] = LongPollClient(info: info, lastSeen: now)
                state.version += 1
            }
            state.polls[key]?.lastSeen = now
            state.polls[key]?.waiting += 1
        }
        return key
    }

    public func endPoll(_ key: String) {
        state.withLock { state in
            state.polls[key]?.waiting -= 1
            state.polls[key]?.lastSeen = .now
        }
    }

    public func list() -> [ClientInfo] {
        state.withLock { state in
            let cutoff = ContinuousClock.now - longPollLinger
            let before = state.polls.count
            state.polls = state.polls.filter { $0.value.waiting > 0 || $0.value.lastSeen > cutoff }
            if state.polls.count != before { state.version += 1 }
            return (state.sockets.values + state.polls.values.map(\.info)).sorted { ($0.connectedAt, $0.id) < ($1.connectedAt, $1.id) }
        }
    }

    public var count: Int { list().count }

    /// Connected clients by transport (every transport listed, zero included).
    public func countsByTransport() -> [String: Int] {
        var counts = Dictionary(uniqueKeysWithValues: [Transport.webSocket, .longPoll, .sse].map { ($0.rawValue, 0) })
        for client in list() { counts[client.transport.rawValue, default: 0] += 1 }
        return counts
    }

    /// "1.2.3.4:5678" → "1.2.3.4", "[::1]:5678" → "::1": a long-poll client keeps its identity across source ports.
    static func host(of remote: String) -> String {
        if remote.hasPrefix("["), let end = remote.firstIndex(of: "]") {
            return String(remote[remote.index(after: remote.startIndex)..<end])
        }
        if let colon = remote.lastIndex(of: ":"), remote.firstIndex(of: ":") == colon {
            return String(remote[..<colon])
        }
        return remote
    }
}
