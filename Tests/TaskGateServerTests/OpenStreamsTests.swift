import Testing

@testable import TaskGateServer

@Suite("Open WebSockets at shutdown", .timeLimit(.minutes(1)))
struct OpenStreamsTests {
    @Test func theWaitEndsWhenTheLastSocketCloses() async {
        let sockets = OpenStreams()
        sockets.opened()
        sockets.opened()
        let clock = ContinuousClock()
        let started = clock.now
        async let waited: Void = sockets.waitUntilAllClosed(timeout: .seconds(30))
        sockets.closed()
        #expect(sockets.count == 1)
        sockets.closed()
        await waited
        #expect(sockets.count == 0)
        #expect(clock.now - started < .seconds(30))
    }

    @Test func theWaitIsBoundedWhileSocketsStayOpen() async {
        let sockets = OpenStreams()
        sockets.opened()
        await sockets.waitUntilAllClosed(timeout: .milliseconds(50))
        #expect(sockets.count == 1)
    }

    @Test func nothingOpenMeansNoWait() async {
        await OpenStreams().waitUntilAllClosed(timeout: .seconds(30))
    }
}
