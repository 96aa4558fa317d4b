#!/usr/bin/env bash
# Builds TaskGate's libFuzzer targets and runs each for a bounded time.
#
#   bash scripts/fuzz.sh [--seconds N] [target...]
#
# Targets (default: all): wire_json client_message config upgrade_gate  (sources: fuzz/targets/<name>.swift)
#
# Each target is built into .build-fuzz/bin/<name> (with libFuzzer's coverage; see below for ASan), replays the inputs saved under
# fuzz/regressions/<name>-*, then fuzzes for N seconds (default 60), with fuzz/dict/<name>.dict, on a copy of
# fuzz/corpus/<name>/ (the copy grows, the repo does not). Crash inputs go to .build-fuzz/artifacts/, logs to
# .build-fuzz/logs/. For each target
# it prints `fuzz <name>: <executions> executions, <crashes> crashes`, and exits non-zero if any target crashed
# (or did not build). libFuzzer stops at the first crash, so a fuzzing run counts at most one; replayed
# regressions that still crash are added to it.
#
# How they are built: the TaskGateCore targets compile the pure-Swift files they need (Protocol/, Model/,
# Config/ of Sources/TaskGateCore, which import only Foundation) together with the target file into one module with
# `swiftc -O -sanitize=fuzzer,address -parse-as-library` (SwiftPM executables do not link with -sanitize=fuzzer).
# `upgrade_gate` needs TaskGateServer and so NIO and Hummingbird: a generated SwiftPM package, see
# fuzz/upgrade_gate/build.sh; by default a debug build with coverage and no ASan, whose first build compiles the
# whole dependency graph (~10 min on 2 cores; see fuzz/README.md for the other choices and their cost).
#
# Environment: FUZZ_ARGS adds libFuzzer options to every run (e.g. FUZZ_ARGS="-max_len=65536");
# TASKGATE_FUZZ_CONFIGURATION (debug|release, default debug) and TASKGATE_FUZZ_UPGRADE_ASAN (0|1, default 0) choose
# how upgrade_gate is built (see fuzz/README.md).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ALL_TARGETS=(wire_json client_message config upgrade_gate)
SECONDS_PER_TARGET=60
TARGETS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seconds) SECONDS_PER_TARGET="${2:?--seconds needs a number}"; shift 2 ;;
        --seconds=*) SECONDS_PER_TARGET="${1#--seconds=}"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
        *) TARGETS+=("$1"); shift ;;
    esac
done
[[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ && "$SECONDS_PER_TARGET" -gt 0 ]] || { echo "fuzz.sh: --seconds must be a positive whole number" >&2; exit 2; }
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=("${ALL_TARGETS[@]}")
for target in "${TARGETS[@]}"; do
    [[ -f "fuzz/targets/$target.swift" ]] || { echo "fuzz.sh: no target '$target' (fuzz/targets/$target.swift)" >&2; exit 2; }
done

OUT="$ROOT/.build-fuzz"
mkdir -p "$OUT/bin" "$OUT/artifacts" "$OUT/logs" "$OUT/corpus"

# --- Toolchain -------------------------------------------------------------------------------------------------
if ! command -v swiftc >/dev/null 2>&1 && [[ -x /opt/swift/usr/bin/swiftc ]]; then export PATH="/opt/swift/usr/bin:$PATH"; fi
command -v swiftc >/dev/null 2>&1 || { echo "fuzz.sh: swiftc not found (the Swift toolchain is expected at /opt/swift)" >&2; exit 1; }

apt_install() {
    echo "fuzz.sh: installing $* (apt-get)" >&2
    if [[ $(id -u) -eq 0 ]]; then apt-get install -y "$@" >&2 || { apt-get update >&2 && apt-get install -y "$@" >&2; }
    else sudo apt-get install -y "$@" >&2; fi
}
# swiftc links with gold on Linux.
command -v ld.gold >/dev/null 2>&1 || apt_install binutils

# libFuzzer and ASan come with the toolchain's clang runtime (no Debian package puts them where swiftc looks).
SWIFT_BIN="$(dirname "$(readlink -f "$(command -v swiftc)")")"
RUNTIME_DIR="$SWIFT_BIN/../lib/swift/clang/lib/linux"
for lib in libclang_rt.fuzzer-x86_64.a libclang_rt.asan-x86_64.a; do
    [[ -f "$RUNTIME_DIR/$lib" ]] || {
        echo "fuzz.sh: $RUNTIME_DIR/$lib is missing: this Swift toolchain has no clang fuzzer/ASan runtime (install the full swift.org toolchain)" >&2
        exit 1
    }
done

log() { echo "fuzz.sh: $*" >&2; }

# Swift's own crash backtracer would run inside the sanitizer's signal handling (and trip ASan reading the stack):
# leave crashes to libFuzzer, which reports them and saves the input.
export SWIFT_BACKTRACE=enable=no

# --- Building --------------------------------------------------------------------------------------------------
SWIFT_FLAGS=(-O -sanitize=fuzzer,address -parse-as-library -g)

# Compiles files into .build-fuzz/bin/<target>, unless a build from the same inputs and flags is already there.
compile() {
    local target="$1"; shift
    local bin="$OUT/bin/$target" stamp="$OUT/bin/$target.inputs"
    local digest
    digest="$( { swiftc --version 2>&1; printf '%s\n' "${SWIFT_FLAGS[@]}"; for file in "$@"; do printf '%s\n' "$file"; cat "$file"; done; } | sha256sum | cut -d' ' -f1)"
    if [[ -x "$bin" && -f "$stamp" && "$(cat "$stamp")" == "$digest" ]]; then
        log "$target: up to date"
        return 0
    fi
    log "$target: building ($# files)"
    rm -f "$stamp"
    local status=0
    # gold's "Cannot export local symbol" warnings for the sanitizer runtime are harmless.
    swiftc "${SWIFT_FLAGS[@]}" -module-name TaskGateCore "$@" -o "$bin" >"$OUT/logs/$target.build.log" 2>&1 || status=$?
    grep -v "Cannot export local symbol" "$OUT/logs/$target.build.log" | grep -E "error|warning: unre" >&2 || true
    [[ $status -eq 0 ]] || { log "$target: build failed (log: $OUT/logs/$target.build.log)"; return 1; }
    echo "$digest" >"$stamp"
}

# The TaskGateCore sources the core targets compile, copied first so that edits made meanwhile (another engineer
# working in Sources/) cannot change a file under the compiler ("was modified during the build").
CORE_SNAPSHOT=""
core_sources() {
    if [[ -z "$CORE_SNAPSHOT" ]]; then
        CORE_SNAPSHOT="$OUT/src/TaskGateCore"
        rm -rf "$CORE_SNAPSHOT"
        mkdir -p "$CORE_SNAPSHOT"
        local dir
        for dir in Protocol Model Config; do cp -R "Sources/TaskGateCore/$dir" "$CORE_SNAPSHOT/$dir"; done
        if grep -q "import \(NIO\|GRDB\|Logging\|DequeModule\|Subprocess\)" -r "$CORE_SNAPSHOT"; then
            log "warning: a file in Protocol/, Model/ or Config/ now imports a package module; the core targets will not build:"
            grep -l "import \(NIO\|GRDB\|Logging\|DequeModule\|Subprocess\)" -r "$CORE_SNAPSHOT" >&2
        fi
    fi
    find "$CORE_SNAPSHOT" -name '*.swift' | LC_ALL=C sort
    # NodeReload (a field of ServerMessage) lives in Cluster/SharedTaskStore.swift: a copy, unless it has moved.
    grep -q "struct NodeReload" -r "$CORE_SNAPSHOT" || echo "$ROOT/fuzz/support/CoreStubs.swift"
}

build_target() {
    local target="$1"
    case "$target" in
        wire_json|client_message|config)
            local files
            mapfile -t files < <(core_sources)
            compile "$target" "${files[@]}" "$ROOT/fuzz/targets/$target.swift"
            ;;
        upgrade_gate)
            build_upgrade_gate
            ;;
    esac
}

# See fuzz/README.md ("upgrade_gate").
build_upgrade_gate() {
    bash "$ROOT/fuzz/upgrade_gate/build.sh" "$OUT"
}

# --- Running ---------------------------------------------------------------------------------------------------
TOTAL_CRASHES=0
SUMMARY=()

# The first lines of a crash report in a libFuzzer log: what failed and the top of its stack.
report() {
    local lines
    lines="$(grep -v -e '^  0x' -e 'Shadow' -e 'llvm-project/compiler-rt' -e '/libc\.so' -e '_assertionFailure' "$1" \
        | grep -m 1 -A 10 -E "Fatal error|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)" || true)"
    if [[ -n "$lines" ]]; then echo "$lines" | sed 's/^/    /' >&2; else tail -15 "$1" | sed 's/^/    /' >&2; fi
}

run_target() {
    local target="$1" bin="$OUT/bin/$1"
    local crashes=0 executions=0
    local extra_env=()
    if [[ "$target" == upgrade_gate ]]; then extra_env=(LSAN_OPTIONS="suppressions=$ROOT/fuzz/upgrade_gate/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"); fi

    # Saved crashers first: each must now pass.
    local regression
    for regression in fuzz/regressions/"$target"-*; do
        [[ -f "$regression" ]] || continue
        if env "${extra_env[@]}" "$bin" -artifact_prefix="$OUT/logs/regression-" "$regression" >"$OUT/logs/$target.regression.log" 2>&1; then
            log "$target: regression $regression passes"
        else
            log "$target: regression $regression still crashes (log: $OUT/logs/$target.regression.log):"
            report "$OUT/logs/$target.regression.log"
            crashes=$((crashes + 1))
        fi
    done

    local corpus="$OUT/corpus/$target"
    rm -rf "$corpus"
    mkdir -p "$corpus"
    cp -R "fuzz/corpus/$target/." "$corpus/"

    local dict=()
    [[ -f "fuzz/dict/$target.dict" ]] && dict=(-dict="$ROOT/fuzz/dict/$target.dict")
    local status=0
    log "$target: fuzzing for ${SECONDS_PER_TARGET}s"
    # shellcheck disable=SC2086
    env "${extra_env[@]}" "$bin" "$corpus" \
        -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 -timeout=30 -rss_limit_mb=2048 \
        -artifact_prefix="$OUT/artifacts/$target-" "${dict[@]}" ${FUZZ_ARGS:-} \
        >"$OUT/logs/$target.log" 2>&1 || status=$?

    executions="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$OUT/logs/$target.log" | tail -1 | grep -o '[0-9]*$' || true)"
    if [[ -z "$executions" ]]; then
        executions="$(grep -o '^#[0-9]*' "$OUT/logs/$target.log" | tail -1 | tr -d '#' || true)"
    fi
    executions="${executions:-0}"

    # libFuzzer names each input it saves for a crash, leak, timeout or OOM (slow units are not failures).
    local new
    new="$(grep -o 'Test unit written to .*' "$OUT/logs/$target.log" | sed 's/^Test unit written to //' | grep -v '/[^/]*slow-unit-[^/]*$' || true)"
    if [[ -n "$new" ]]; then
        crashes=$((crashes + $(echo "$new" | wc -l)))
        local artifact
        while read -r artifact; do log "$target: crash input saved as $artifact"; done <<<"$new"
    elif [[ $status -ne 0 ]]; then
        crashes=$((crashes + 1))
        log "$target: the fuzzer exited with $status without saving an input"
    fi
    if [[ $status -ne 0 || -n "$new" ]]; then
        log "$target: log $OUT/logs/$target.log; the report:"
        report "$OUT/logs/$target.log"
    fi

    TOTAL_CRASHES=$((TOTAL_CRASHES + crashes))
    SUMMARY+=("fuzz $target: $executions executions, $crashes crashes")
    echo "fuzz $target: $executions executions, $crashes crashes"
}

FAILED_BUILDS=0
for target in "${TARGETS[@]}"; do
    if build_target "$target"; then
        run_target "$target"
    else
        FAILED_BUILDS=$((FAILED_BUILDS + 1))
        SUMMARY+=("fuzz $target: not built")
        echo "fuzz $target: not built"
    fi
done

if [[ ${#TARGETS[@]} -gt 1 ]]; then
    echo "--"
    printf '%s\n' "${SUMMARY[@]}"
fi
[[ $TOTAL_CRASHES -eq 0 && $FAILED_BUILDS -eq 0 ]]
