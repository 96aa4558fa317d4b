// The upgrade_gate binary's main: SwiftPM gives an executable its own entry point, so libFuzzer is linked without its
// main (libclang_rt.fuzzer_no_main) and started here with the target's callback.
import CFuzzerDriver

#if canImport(Glibc)
import Glibc
#endif

var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
    guard let data else {
        var empty: UInt8 = 0
        return upgradeGateFuzz(&empty, 0)
    }
    return upgradeGateFuzz(data, size)
})
