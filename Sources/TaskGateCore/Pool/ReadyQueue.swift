import DequeModule
import HeapModule

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

    /// A lane's place in the round robin, set when its head task is: served longest ago first, then the oldest
    /// head. A turn whose head has since left (a cancel) is stale and is dropped when it comes up.
    private struct Turn: Comparable {
        var served: UInt64
        var sequence: UInt64
        var lane: Lane

        static func < (left: Turn, right: Turn) -> Bool {
            (left.served, left.sequence) < (right.served, right.sequence)
        }

        /// Sequences are unique, so they identify a turn.
        static func == (left: Turn, right: Turn) -> Bool {
            left.served == right.served && left.sequence == right.sequence
        }
    }

    /// One priority's lanes, each first in, first out, and their turns in order: a pick looks at the lanes in
    /// turn order and stops at the first with nothing running, rather than weighing every waiting lane.
    private struct Level {
        var lanes: [Lane: Deque<Entry>] = [:]
        var turns = Heap<Turn>()
    }

    let fairShare: Bool
    /// Priority 0 first.
    private var levels: [Level]
    private var nextSequence: UInt64 = 0
    private(set) var count = 0
    /// When each lane last had a task started (a count of starts): the round robin's memory. Only the most recent
    /// are kept; a forgotten lane counts as served long ago, which is what the oldest stamps said anyway.
    private var served: [Lane: UInt64] = [:]
    private var starts: UInt64 = 0

    init(fairShare: Bool) {
        self.fairShare = fairShare
        levels = Array(repeating: Level(), count: TaskScheduling.priorities.count)
    }

    var isEmpty: Bool { count == 0 }

    /// How many of `uid`'s tasks wait here (for the per-uid limit): a walk over the lanes, not the tasks.
    func count(uid: String?) -> Int {
        levels.reduce(0) { total, level in
            total + level.lanes.reduce(0) { $0 + ($1.key.uid == uid ? $1.value.count : 0) }
        }
    }

    var elements: [Element] {
        levels.flatMap { $0.lanes.values.flatMap { $0.map(\.element) } }
    }

    mutating func append(_ element: Element, id: String, lane: Lane, priority: Int) {
        let level = min(max(priority, TaskScheduling.priorities.lowerBound), TaskScheduling.priorities.upperBound)
        let entry = Entry(sequence: nextSequence, id: id, element: element)
        nextSequence += 1
        count += 1
        if levels[level].lanes[lane]?.append(entry) == nil {
            levels[level].lanes[lane] = [entry]
            levels[level].turns.insert(turn(of: lane, head: entry))
        }
    }

    /// Takes a waiting task out (a cancel).
    mutating func remove(id: String) -> Element? {
        for level in levels.indices {
            for (lane, entries) in levels[level].lanes {
                guard let index = entries.firstIndex(where: { $0.id == id }) else { continue }
                let removed = levels[level].lanes[lane]!.remove(at: index)
                count -= 1
                if let head = levels[level].lanes[lane]!.first {
                    // The old head's turn goes stale; the new head takes the lane's place as it stood.
                    if index == 0 { levels[level].turns.insert(turn(of: lane, head: head)) }
                } else {
                    levels[level].lanes[lane] = nil
                }
                return removed.element
            }
        }
        return nil
    }

    /// The next task to start, skipping the handlers in `held` (their start rate is used up); `nil` if none may.
    mutating func popNext(running: (Lane) -> Int, held: Set<String> = []) -> Element? {
        for level in levels.indices where !levels[level].lanes.isEmpty {
            guard let lane = pickLane(in: level, running: running, held: held) else { continue }
            let entry = levels[level].lanes[lane]!.removeFirst()
            count -= 1
            if fairShare { noteServed(lane) }
            if let head = levels[level].lanes[lane]!.first {
                levels[level].turns.insert(turn(of: lane, head: head))
            } else {
                levels[level].lanes[lane] = nil
            }
            return entry.element
        }
        return nil
    }

    /// The lane whose head starts next at `level`, its turn taken off the heap. Lanes are looked at in turn order,
    /// so the first with nothing running wins; the ones passed over (running a task, or held) go back. At most the
    /// running lanes and the held ones are passed over, not every lane that waits.
    private mutating func pickLane(in level: Int, running: (Lane) -> Int, held: Set<String>) -> Lane? {
        var passedOver: [Turn] = []
        var best: (turn: Turn, load: Int)?
        while let turn = levels[level].turns.popMin() {
            guard levels[level].lanes[turn.lane]?.first?.sequence == turn.sequence else { continue }  // stale
            if !held.isEmpty, held.contains(turn.lane.cmd) {
                passedOver.append(turn)
                continue
            }
            let load = fairShare ? running(turn.lane) : 0
            if let current = best, current.load <= load {
                passedOver.append(turn)
                continue
            }
            if let current = best { passedOver.append(current.turn) }
            best = (turn, load)
            if load == 0 { break }
        }
        for turn in passedOver { levels[level].turns.insert(turn) }
        return best?.turn.lane
    }

    private func turn(of lane: Lane, head: Entry) -> Turn {
        Turn(served: fairShare ? served[lane] ?? 0 : 0, sequence: head.sequence, lane: lane)
    }

    private mutating func noteServed(_ lane: Lane) {
        starts += 1
        served[lane] = starts
        guard served.count > 1024 else { return }
        let newest = served.sorted { $0.value > $1.value }.prefix(512)
        served = Dictionary(uniqueKeysWithValues: newest.map { ($0.key, $0.value) })
    }
}
