/// The one nesting limit for JSON that TaskGate reads (client messages, REST bodies, handler results) and so writes:
/// a value that passed it can always be written and read back, whatever front door it came through. A document
/// nests at most `maxDepth` levels; args and results, which stand one level inside a message, at most one less
/// (a server message that carries them adds at most two levels of envelope). 64 levels is far beyond any real
/// task's arguments, and keeps every recursive walk over a value shallow.
public enum JSONLimits {
    /// The deepest nesting of arrays and objects in one document (a bare scalar is depth 0, `[]` depth 1).
    public static let maxDepth = 64
}

extension JSONValue {
    /// How deeply arrays and objects nest in this value; stops counting past `limit` (so a hostile value costs no
    /// more than the limit to check).
    public func nestingDepth(limit: Int = JSONLimits.maxDepth) -> Int {
        switch self {
        case .null, .bool, .number, .string: return 0
        case .array(let elements):
            guard limit > 0 else { return 1 }
            return 1 + elements.reduce(0) { max($0, $1.nestingDepth(limit: limit - 1)) }
        case .object(let members):
            guard limit > 0 else { return 1 }
            return 1 + members.values.reduce(0) { max($0, $1.nestingDepth(limit: limit - 1)) }
        }
    }

    /// Whether the value fits `JSONLimits.maxDepth` when it stands `level` levels deep in a document.
    public func fitsDepthLimit(at level: Int = 0) -> Bool {
        nestingDepth(limit: JSONLimits.maxDepth - level + 1) + level <= JSONLimits.maxDepth
    }
}
