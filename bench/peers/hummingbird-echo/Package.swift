// swift-tools-version:6.1
// The bare Hummingbird WebSocket echo that bench/run.sh measures beside TaskGate: hummingbird-websocket with the
// settings TaskGate's `/ws` had on it (see Sources/hummingbird-echo/main.swift), without TaskGate's protocol.
// A package of its own so that TaskGate itself no longer depends on hummingbird-websocket for it.
import PackageDescription

let package = Package(
    name: "hummingbird-echo",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "hummingbird-echo", targets: ["hummingbird-echo"])
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
        // Already in the graph through Hummingbird; named for NIOPosix (the global executor, see main.swift).
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(
            name: "hummingbird-echo",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "HummingbirdWSCompression", package: "hummingbird-websocket"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        )
    ]
)
