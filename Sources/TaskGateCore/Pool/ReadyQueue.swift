import DequeModule

/// Whose turn it is, for fair share: a uid's tasks of one handler.
struct Lane: Hashable, Sendable {
    var cmd: String
    var uid: String?
}

/// The due tasks waiting for a worker, and the one rule that picks the next: the lowest priority number first;
/// within a priority, with fair share, the lane (uid and handler) with the fewest tasks running, then the one served
/// longest ago (round robin); then the oldest task. So one uid's burst of 200 tasks does not make another uid's
/// single task wait behind all of them.
///
/// The cluster's claim query applies the same rule to the shared table (`PostgresTaskStore.claim`).
struct ReadyQueue<Element> {
    private struct Entry {
        var sequence: UInt64
        var id: String
        var element: Element
    }

    let fairShare: Bool
    /// One map of lanes per priority, 0 first; each lane is first in, first out.
    private var levels: [[Lane: Deque<Entry>]]
    private var nextSequence: UInt64 = 0
    private(set) var count = 0
    /// When each lane last had a task started (a count of starts): the round robin's memory. Only the most recent
    /// are kept; a forgotten lane counts as served long ago, which is what the oldest stamps said anyway.
    private var served: [Lane: UInt64] = [:]
    private var starts: UInt64 = 0

    init(fairShare: Bool) {
        self.fairShare = fairShare
        levels = Array(repeating: [:], count: TaskScheduling.priorities.count)
    }

    var isEmpty: Bool { count == 0 }

    /// How many of `uid`'s tasks wait here (for the per-uid limit): a walk over the lanes, not the tasks.
    func count(uid: String?) -> Int {
        levels.reduce(0) { total, lanes in total + lanes.reduce(0) { $0 + ($1.key.uid == uid ? $1.value.count : 0) } }
    }

    var elements: [Element] {
        levels.flatMap { $0.values.flatMap { $0.map(\.element) } }
    }

    mutating func append(_ element: Element, id: String, lane: Lane, priority: Int) {
        let level = min(max(priority, TaskScheduling.priorities.lowerBound), TaskScheduling.priorities.upperBound)
        levels[level][lane, default: []].append(Entry(sequence: nextSequence, id: id, element: element))
        nextSequence += 1
        count += 1
    }

    /// Takes a waiting task out (a cancel).
    mutating func remove(id: String) -> Element? {
        for level in levels.indices {
            for (lane, entries) in levels[level] {
                guard let index = entries.firstIndex(where: { $0.id == id }) else { continue }
                let removed = levels[level][lane]!.remove(at: index)
                if levels[level][lane]!.isEmpty { levels[level][lane] = nil }
                count -= 1
                return removed.element
            }
        }
        return nil
    }

    /// The next task to start, skipping the handlers in `held` (their start rate is used up); `nil` if none may.
    mutating func popNext(running: (Lane) -> Int, held: Set<String> = []) -> Element? {
        for level in levels.indices where !levels[level].isEmpty {
            var best: (lane: Lane, load: Int, served: UInt64, sequence: UInt64)?
            for (lane, entries) in levels[level] where !held.contains(lane.cmd) {
                guard let head = entries.first else { continue }
                let load = fairShare ? running(lane) : 0
                let lastServed = fairShare ? served[lane] ?? 0 : 0
                if let current = best, (current.load, current.served, current.sequence) <= (load, lastServed, head.sequence) {
                    continue
                }
                best = (lane, load, lastServed, head.sequence)
            }
            guard let best else { continue }
            let entry = levels[level][best.lane]!.removeFirst()
            if levels[level][best.lane]!.isEmpty { levels[level][best.lane] = nil }
            count -= 1
            if fairShare { noteServed(best.lane) }
            return entry.element
        }
        return nil
    }

    private mutating func noteServed(_ lane: Lane) {
        starts += 1
        served[lane] = starts
        guard served.count > 1024 else { return }
        let newest = served.sorted { $0.value > $1.value }.prefix(512)
        served = Dictionary(uniqueKeysWithValues: newest.map { ($0.key, $0.value) })
    }
}
