// Stand-ins for TaskGateCore types that the compiled subset of its sources (Protocol/, Model/, Config/) names but
// that live in files the fuzz targets cannot compile on their own. None of the fuzzed code paths use them.
//
// `NodeReload` is defined in Sources/TaskGateCore/Cluster/SharedTaskStore.swift, next to the `SharedTaskStore`
// protocol, whose requirements name `LoggedEvent` (Events/EventLog.swift, which imports DequeModule) and whose
// `init(node:result:)` pulls in the handler registry and the built-in handlers. `ServerMessage.nodes` and
// `WireWriter.write(_: NodeReload)` only need its stored properties, so this copy has exactly those: if a field is
// added to the real one and written by WireWriter, this file no longer compiles and must follow.
// Once `NodeReload` lives in a file of its own under Protocol/ (its `init(node:result:)` as an extension elsewhere),
// this stub can go (scripts/fuzz.sh leaves it out by itself when Protocol/ or Model/ defines `NodeReload`).

public struct NodeReload: Sendable, Codable, Equatable {
    public var node: String
    public var generation: Int?
    public var handlers: [String]?
    public var added: [String]?
    public var changed: [String]?
    public var removed: [String]?
    public var error: String?
}
