import Foundation
import Hummingbird
import TaskGateCore

/// In front of the static files: a path with a control character once decoded (`%00`, `%0a`, …) is refused with
/// 400 before anything reads it, and a file reached through a symbolic link that leads out of the public
/// directory is not served (404), whatever the link's name.
struct StaticFileGuard<Context: RequestContext>: RouterMiddleware {
    /// The public directory with every link in it resolved.
    let root: String?

    init(root: String) {
        self.root = Self.resolve(root)
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let raw = request.uri.path
        guard let path = raw.removingPercentEncoding else { throw GatewayError.badRequest("the path is not valid percent-encoded UTF-8") }
        guard !path.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw GatewayError.badRequest("the path contains a control character")
        }
        if request.method == .get || request.method == .head, let root, let target = Self.resolve(root + path),
            target != root, !target.hasPrefix(root.hasSuffix("/") ? root : root + "/")
        {
            throw GatewayError(.notFound, "no such path: \(raw)")
        }
        return try await next(request, context)
    }

    /// The canonical path with links followed, or `nil` when nothing is there.
    static func resolve(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
