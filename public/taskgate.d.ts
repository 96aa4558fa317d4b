/*! TypeScript declarations of the TaskGate browser client (taskgate.js, taskgate.mjs) — see docs/client.md.
 *
 * ES module (taskgate.mjs, or a bundler):
 *     import TaskGate, { Client, TaskGateError, type Task } from '/taskgate.mjs';
 *   TypeScript finds these declarations for a `…/taskgate.js` specifier next to this file by itself; map other
 *   specifiers in tsconfig.json: "paths": { "/taskgate.mjs": ["./public/taskgate.d.ts"] }.
 *
 * Classic script (<script src="/taskgate.js">): include this file in the compilation (tsconfig "files", or
 *     /// <reference path="public/taskgate.d.ts" />)
 *   and use the global `TaskGate` (also `window.TaskGate`); its types are `TaskGate.Task`, `TaskGate.DoneEvent`, …
 *
 * The message shapes are the wire protocol's (docs/protocol.md; the schemas of openapi.yaml).
 */

// ------------------------------------------------------------------ the protocol's values

/** Any JSON value. */
export type JSONValue = string | number | boolean | null | JSONValue[] | { [key: string]: JSONValue };

/**
 * A task's status. `succeeded`, `failed`, `cancelled` and `timed_out` are final. `scheduled`: a delayed task waits
 * for its `runAt` (then it goes straight to `running`).
 */
export type TaskStatus = 'scheduled' | 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'timed_out';
/** The final statuses: each is announced by exactly one `done` event. */
export type FinalStatus = 'succeeded' | 'failed' | 'cancelled' | 'timed_out';
/** The final statuses that make `submit()` reject (with `err.task` and `err.error` = the status). */
export type FailedStatus = 'failed' | 'cancelled' | 'timed_out';

/** A transport, by its canonical name. */
export type Transport = 'websocket' | 'sse' | 'long-poll';
/** What `transports` accepts: the canonical names and their aliases (compared without regard to case). */
export type TransportName =
    | Transport
    | 'ws'
    | 'eventsource'
    | 'server-sent-events'
    | 'longpoll'
    | 'poll';

/** The server's commands; every other `cmd` is a handler name (a task submission). */
export type ServerCommand = 'ping' | 'status' | 'cancel' | 'handlers' | 'clients' | 'reload';

/** The slugs of the server's error replies and REST error bodies (`Error.error` in openapi.yaml). */
export type ErrorSlug =
    | 'bad_request'
    | 'unauthorized'
    | 'forbidden'
    | 'unknown_command'
    | 'not_found'
    | 'node_not_found'
    | 'method_not_allowed'
    | 'request_timeout'
    | 'already_finished'
    | 'too_large'
    | 'uri_too_long'
    | 'headers_too_large'
    | 'rate_limited'
    | 'queue_full'
    | 'unavailable'
    | 'internal_error';

/** The HTTP-like codes of error replies. */
export type ErrorCode = 400 | 401 | 403 | 404 | 405 | 409 | 413 | 429 | 500 | 503;

/** The errors the client makes up itself (`TaskGateError.code` 0). */
export type ClientErrorSlug = 'disconnected' | 'timeout' | 'closed' | 'bad_reply';

/**
 * A whole task as the server reports it in the `submitted`, `status` and `cancelling` replies and the REST API
 * (`Task` in openapi.yaml). Events carry only what changed: `TaskProgress`, `TaskDone`.
 */
export interface Task {
    /** `<uid>~<your args.id>` for a client-given id, or a server-generated `t-…`. */
    id: string;
    /** The handler. */
    cmd: string;
    /** The owner; null only for a task submitted over REST without a uid. */
    uid: string | null;
    /** The arguments as submitted. */
    args: { [key: string]: JSONValue };
    status: TaskStatus;
    /** Fraction done, 0–1, as the handler reports it. */
    progress: number;
    /** The handler's result once `succeeded`; null until then. */
    result: JSONValue;
    /** The error text of a `failed`, `cancelled` or `timed_out` task (and of the last attempt while a retry waits). */
    error: string | null;
    /** How many times a worker has started the task. */
    attempts: number;
    /** 0–9, 0 runs first: `args.priority`, or the handler's default. (Absent from servers without scheduling.) */
    priority?: number;
    /** ISO 8601 UTC time at which a delayed or scheduled task is due; null otherwise. */
    runAt?: string | null;
    /** The name of the recurring schedule that made the task; null otherwise. */
    schedule?: string | null;
    /** ISO 8601 UTC timestamps. */
    createdAt: string;
    startedAt: string | null;
    finishedAt: string | null;
    /** The cluster node that last ran the task; null on a single node. */
    node?: string | null;
    /** The W3C `traceparent` of the span that submitted the task, when the server traces (`serve --otel`). */
    traceparent?: string | null;
}

/**
 * What a `progress` event's `task` carries (`TaskProgress` in openapi.yaml): exactly these fields, no `cmd`, `args`,
 * `result` or timestamps. Merge it into the task of the `submitted` reply (`submit()` does).
 */
export interface TaskProgress {
    id: string;
    status: TaskStatus;
    /** Fraction done, 0–1, as the handler reports it. */
    progress: number;
    /** How many times a worker has started the task. */
    attempts: number;
}

/**
 * What a `done` event's `task` carries (`TaskDone` in openapi.yaml): exactly these fields, no `cmd`, `args` or
 * timestamps. The whole final task: `status(id)` (or the task `submit()` resolves with).
 */
export interface TaskDone {
    id: string;
    /** The outcome. */
    status: FinalStatus;
    /** The handler's result when `succeeded`; null otherwise. */
    result: JSONValue;
    /** The error text of a `failed`, `cancelled` or `timed_out` task; null when it succeeded. */
    error: string | null;
}

/** What an event's `task` carries: the fields the event changed (a progress or a done event's). */
export type TaskChange = TaskProgress | TaskDone;

/** A submission's `args`: the handler's arguments plus the task options. */
export interface TaskArgs {
    /** Your task id: 1–128 characters of `A-Z a-z 0-9 . _ : -`, or a non-negative whole number. Idempotent. */
    id?: string | number | null;
    /** A timeout for this task only, in ms (at most 24 h). */
    timeout_ms?: number | null;
    /** How many times the task may be started in all, 1–10. */
    max_attempts?: number | null;
    /** 0–9, 0 runs first. Without admin rights, only the handler's default or a larger number (else 403). */
    priority?: number | null;
    /** Wait this many ms (at most 30 days) before the task may start. Not together with `run_at`. */
    delay_ms?: number | null;
    /** RFC 3339 time with a zone, at most 30 days ahead, from which the task may start. Not with `delay_ms`. */
    run_at?: string | null;
    [arg: string]: unknown;
}

/** A client message: a WebSocket text frame or the body of `POST /poll`. */
export interface ClientMessage {
    cmd: string;
    args?: TaskArgs | null;
    /** Echoed in the direct reply. */
    ref?: string | number | null;
}

/** The first message of a WebSocket and the first frame of an SSE stream. */
export interface HelloMessage {
    type: 'hello';
    info?: string;
    uid: string;
    transport: 'websocket' | 'sse';
    /** The uid's latest event seq (before December 2026 the server called it `seq`; only events carry `seq` now). */
    head: number;
    admin: boolean;
    /** The requested cursor could not be honoured (older than the retained log, or newer than the latest seq). */
    reset: boolean;
}

/** What the client reports as `hello` on long-poll, which has none: made from the first poll's answer. */
export interface SyntheticHello {
    type: 'hello';
    info?: string;
    uid: string | null;
    transport: 'long-poll';
    /** The client's cursor after the first poll. */
    head: number | null;
    admin: boolean;
    reset: boolean;
    synthetic: true;
}

/** Sent while a task runs. Only events carry `seq`; `task` is what changed (`TaskProgress`), not the whole task. */
export interface ProgressEvent {
    type: 'progress';
    seq: number;
    task: TaskProgress;
}

/**
 * Sent once, when a task reaches a final status (the outcome is `task.status`, not `code`); `task` is what changed
 * (`TaskDone`: id, status, result, error), not the whole task.
 */
export interface DoneEvent {
    type: 'done';
    code: 200;
    info: string;
    seq: number;
    task: TaskDone;
}

/** A progress or done event (kept in the uid's event log). */
export type TaskEvent = ProgressEvent | DoneEvent;

interface ReplyBase {
    /** The `ref` of the message replied to; absent (or null) when it had none. */
    ref?: string | null;
}

export interface SubmittedReply extends ReplyBase {
    type: 'submitted';
    /** 202 (also for a duplicate id over WebSocket and POST /poll; the REST API answers a duplicate with 200). */
    code: number;
    info: string;
    /** A task with this id already existed for this uid: it is returned and not run again. */
    duplicate: boolean;
    task: Task;
}

export interface PongReply extends ReplyBase {
    type: 'pong';
    code: 200;
}

export interface StatusReply extends ReplyBase {
    type: 'status';
    code: 200;
    task: Task;
}

/** Cancellation requested; a `done` event with status `cancelled` follows. */
export interface CancellingReply extends ReplyBase {
    type: 'cancelling';
    code: 200;
    task: Task;
}

export interface HandlersReply extends ReplyBase {
    type: 'handlers';
    code: 200;
    handlers: string[];
}

/** A live connection, as `clients` lists it. */
export interface ClientInfo {
    id: string;
    uid: string;
    transport: Transport;
    connectedAt: string;
    /** Peer address and port. */
    remote: string;
    admin: boolean;
    /** The node it is connected to (a cluster); null on a single node. */
    node?: string | null;
}

export interface ClientsReply extends ReplyBase {
    type: 'clients';
    code: 200;
    clients: ClientInfo[];
}

/** One node's answer to a reload. */
export interface NodeReload {
    node: string;
    generation?: number;
    handlers?: string[];
    added?: string[];
    changed?: string[];
    removed?: string[];
    /** Why the node refused the reload, or that it did not answer within 5 s. */
    error?: string;
}

export interface ReloadedReply extends ReplyBase {
    type: 'reloaded';
    code: 200;
    generation: number;
    handlers: string[];
    added?: string[];
    changed?: string[];
    removed?: string[];
    nodes?: NodeReload[];
}

/** An error reply (and the body of every REST error). */
export interface ErrorReply extends ReplyBase {
    type: 'error';
    code: ErrorCode;
    error: ErrorSlug;
    info: string;
}

/** The replies that are not errors. */
export type SuccessReply =
    | SubmittedReply
    | PongReply
    | StatusReply
    | CancellingReply
    | HandlersReply
    | ClientsReply
    | ReloadedReply;

/** The direct reply to one client message: exactly one per message. */
export type DirectReply = SuccessReply | ErrorReply;

/** Any message the server sends on a WebSocket. */
export type ServerMessage = HelloMessage | DirectReply | TaskEvent;

/** The answer of `GET /poll`. */
export interface PollResponse {
    events: TaskEvent[];
    cursor: number;
    reset: boolean;
}

// ------------------------------------------------------------------ options

/** Where the cursor is kept: `sessionStorage`, `localStorage`, or anything with these two methods. */
export interface CursorStorage {
    getItem(key: string): string | null;
    setItem(key: string, value: string): void;
}

/** A signed user token, or a function returning one (or a Promise of one), called for every connection and command. */
export type TokenSource = string | (() => string | PromiseLike<string>);

/** An endpoint override: a URL, or a function called for each attempt. */
export type EndpointOption = string | ((info: { transport: Transport; url: string }) => string);

interface CommonOptions {
    /** The server's base URL (default: `location.origin`); a path prefix is kept. */
    url?: string;
    /** Allowed transports, in order of preference (default: websocket, sse, long-poll). One entry forces it. */
    transports?: readonly TransportName[];
    /** Where the cursor is kept (default `sessionStorage`); `null`: in memory only. */
    storage?: CursorStorage | null;
    /** The key the cursor is stored under (default `taskgate.cursor.<uid>`). */
    storageKey?: string;
    /** With no stored cursor: `'none'` (default) starts with live events, `'all'` first delivers every retained one. */
    replay?: 'none' | 'all';
    /** Start from this seq, ignoring the stored cursor. */
    cursor?: number;
    /** Override `<url>/ws` (`http(s)://` becomes `ws(s)://`). */
    webSocketUrl?: EndpointOption;
    /** Override `<url>/sse`. */
    sseUrl?: EndpointOption;
    /** Override `<url>/poll`. */
    pollUrl?: EndpointOption;
    /** Backoff: `min(maxReconnectDelay, reconnectDelay · 2ⁿ)` ms after the n-th failure in a row (default 500). */
    reconnectDelay?: number;
    /** Default 15000 ms. */
    maxReconnectDelay?: number;
    /** Each delay is multiplied by a random factor in `[1 − jitter, 1]` (default 0.5). */
    jitter?: number;
    /** On a fallback transport, try the better one again after this many ms (default 30000; 0: never). */
    upgradeInterval?: number;
    /** A WebSocket or SSE stream without `hello` within this many ms has failed (default 10000). */
    helloTimeout?: number;
    /** Seconds a `GET /poll` waits for events (default 25). */
    pollTimeout?: number;
    /** A command without a reply after this many ms is rejected with `error: 'timeout'` (default 30000). */
    requestTimeout?: number;
    /** On WebSocket, a `ping` every so many ms; no answer within 10 s: reconnect (default 30000; 0: off). */
    keepAlive?: number;
    /** Adds `admin=1` (loopback, no admin token configured: admin commands allowed). Default false. */
    admin?: boolean;
    /** `false`: call `client.open()` yourself. Default true. */
    autoConnect?: boolean;
    /** For a cross-origin `EventSource`. Default false. */
    withCredentials?: boolean;
    /** How many recent `done` events are remembered for `submit()` replies that arrive after them (default 500). */
    doneCache?: number;
}

/** Options with a uid (development mode: the server trusts `?uid=`). */
export interface UidOptions extends CommonOptions {
    /** 1–128 characters of `A-Z a-z 0-9 . _ : @ -`. */
    uid: string;
    token?: undefined;
}

/** Options with a user token (token mode); the uid is the token's `sub`. */
export interface TokenOptions extends CommonOptions {
    token: TokenSource;
    /** Not used: the uid comes from the token. */
    uid?: string;
}

/** `TaskGate.connect(options)` / `new TaskGate.Client(options)`: a `uid` or a `token` is required. */
export type ClientOptions = UidOptions | TokenOptions;

/** `client.options`: what was given, over the defaults. */
export type ResolvedOptions = Readonly<
    ClientOptions &
        Required<
            Pick<
                CommonOptions,
                | 'transports'
                | 'replay'
                | 'pollTimeout'
                | 'helloTimeout'
                | 'requestTimeout'
                | 'reconnectDelay'
                | 'maxReconnectDelay'
                | 'jitter'
                | 'upgradeInterval'
                | 'keepAlive'
                | 'admin'
                | 'autoConnect'
                | 'doneCache'
            >
        >
>;

/** `submit()`'s third argument. */
export interface SubmitOptions {
    /**
     * Called for each progress event of the task, with the whole task (the `submitted` reply's, with the events'
     * fields merged in) and the event as the server sent it.
     */
    onProgress?: (task: Task, event: ProgressEvent) => void;
    /** Called when the server accepted the task. */
    onSubmitted?: (task: Task, reply: SubmittedReply) => void;
    /** → `args.id` (makes the submission idempotent). */
    id?: string | number;
    /** → `args.timeout_ms`. */
    timeoutMs?: number;
    /** → `args.max_attempts`. */
    maxAttempts?: number;
}

// ------------------------------------------------------------------ events

export type ConnectionState = 'connecting' | 'connected' | 'disconnected';

/** `state`: every change of state. */
export interface StateDetail {
    state: ConnectionState;
    /** The transport in use or being tried; null when none is usable. */
    transport: Transport | null;
    /** Why the client is (re)connecting or disconnected. */
    reason?: string;
    /** Milliseconds until the next attempt, when one is scheduled. */
    retryIn?: number;
    /** Which attempt in a row this is. */
    attempt?: number;
    /** It moved to a better transport (from `from`). */
    upgraded?: boolean;
    from?: Transport | null;
    /** `close()` was called. */
    closed?: boolean;
}

/** `resumed`: after every (re)connection. */
export interface ResumedDetail {
    /** Nothing was missed: every event after `cursor` was (or is being) delivered. */
    complete: boolean;
    /** The server could not honour the cursor: treat local task state as stale. */
    reset: boolean;
    /** The cursor the client resumed from (null: nothing to resume). */
    cursor: number | null;
    /** The server's latest seq at that moment. */
    latest: number | null;
    transport: Transport;
    /** The first connection without a stored cursor. */
    fresh: boolean;
}

/** `error`: informational (the client recovers by itself). */
export interface ErrorDetail {
    message: string;
    /** The transport that failed or was lost. */
    transport?: Transport;
    /** An unsolicited error reply. */
    reply?: ErrorReply;
    code?: number;
    error?: ErrorSlug;
    /** A message from the server the client could not read. */
    data?: unknown;
    /** An attempt to upgrade to a better transport failed (the current one goes on). */
    upgrade?: boolean;
}

/** The client's events and their `detail`. */
export interface ClientEventMap {
    state: StateDetail;
    hello: HelloMessage | SyntheticHello;
    resumed: ResumedDetail;
    progress: ProgressEvent;
    done: DoneEvent;
    reply: DirectReply;
    error: ErrorDetail;
}

export type ClientEventType = keyof ClientEventMap;

/** A listener of `client.on()`: called with the event's detail and the CustomEvent, `this` being the client. */
export type ClientListener<K extends ClientEventType> = (
    this: Client,
    detail: ClientEventMap[K],
    event: CustomEvent<ClientEventMap[K]>,
) => void;

// ------------------------------------------------------------------ the client

/** A handler name: any string but the server's commands (`submit('ping')` is refused). */
export type HandlerName<C extends string> = C extends ServerCommand ? never : C;

/** One connection to TaskGate over the best transport available, with reconnects, fallback and resume. */
export declare class Client extends EventTarget {
    /** Creates the client and starts connecting on the next tick (unless `autoConnect: false`). */
    constructor(options: ClientOptions);

    /** The options in force: what was given, over the defaults. */
    readonly options: ResolvedOptions;
    /** The base URL, without a trailing slash. */
    readonly url: string;
    /** The allowed transports, by canonical name, in order of preference. */
    readonly transports: Transport[];
    /** Where the cursor is kept (null: memory only). */
    readonly storage: CursorStorage | null;

    /** `'connecting'`, `'connected'` or `'disconnected'`. */
    readonly state: ConnectionState;
    /** The transport in use or being tried (null before the first attempt). */
    readonly transport: Transport | null;
    /** The last event seq processed (null before the first connection when there was nothing to resume). */
    readonly cursor: number | null;
    /** The uid (in token mode: the token's `sub`, once known). */
    readonly uid: string | null;
    /** `state === 'connected'`. */
    readonly connected: boolean;

    /** Listens to an event; returns a function that removes the listener. */
    on<K extends ClientEventType>(type: K, fn: ClientListener<K>): () => void;

    addEventListener<K extends ClientEventType>(
        type: K,
        listener: (this: Client, event: CustomEvent<ClientEventMap[K]>) => void,
        options?: boolean | AddEventListenerOptions,
    ): void;
    addEventListener(
        type: string,
        listener: EventListenerOrEventListenerObject | null,
        options?: boolean | AddEventListenerOptions,
    ): void;
    removeEventListener<K extends ClientEventType>(
        type: K,
        listener: (this: Client, event: CustomEvent<ClientEventMap[K]>) => void,
        options?: boolean | EventListenerOptions,
    ): void;
    removeEventListener(
        type: string,
        listener: EventListenerOrEventListenerObject | null,
        options?: boolean | EventListenerOptions,
    ): void;

    /**
     * Submits a task and resolves with it once it `succeeded`. Rejects with a TaskGateError carrying `task` when it
     * failed, timed out or was cancelled (`error` is that status), or `code`/`error`/`info` when the server refused
     * it; with a TypeError for an empty `cmd` or a server command. The task is the whole one of the `submitted` reply
     * with its events' fields merged in (`status`, `progress`, `attempts`, `result`, `error`); the fields no event
     * carries (`finishedAt`, …) are as in that reply: `status(id)` has them.
     */
    submit<C extends string>(cmd: HandlerName<C>, args?: TaskArgs | null, opts?: SubmitOptions): Promise<Task>;
    /** The task (404 `not_found` for an unknown id). */
    status(id: string | number): Promise<Task>;
    /** Asks for cancellation; the task as it was then (the outcome arrives as a `done` event). */
    cancel(id: string | number): Promise<Task>;
    /** The round-trip time in ms. */
    ping(): Promise<number>;
    /** The handler names of the current generation. */
    handlers(): Promise<string[]>;

    /** Sends any client message; resolves with its direct reply, rejects with a TaskGateError on an error reply. */
    send(cmd: 'ping'): Promise<PongReply>;
    send(cmd: 'status', args: { id: string | number }): Promise<StatusReply>;
    send(cmd: 'cancel', args: { id: string | number }): Promise<CancellingReply>;
    send(cmd: 'handlers'): Promise<HandlersReply>;
    send(cmd: 'clients'): Promise<ClientsReply>;
    send(cmd: 'reload', args?: { node?: string }): Promise<ReloadedReply>;
    send(cmd: string, args?: TaskArgs | null): Promise<SuccessReply>;

    /** Resolves with the client once connected (rejects with `timeout` after `timeoutMs`, or `closed`). */
    ready(timeoutMs?: number): Promise<this>;
    /** Connects (again, after `close()` or with `autoConnect: false`). */
    open(): this;
    /** Closes for good: pending commands and `submit()` promises reject with `error: 'closed'`. */
    close(): void;
    /** Skips the current backoff wait (no-op unless disconnected). */
    retryNow(): void;
    /** The storage key of the cursor (null in token mode until the uid is known). */
    storageKey(): string | null;
}

/** What the client's promises reject with. */
export declare class TaskGateError extends Error {
    constructor(message: string, props?: Partial<Pick<TaskGateError, 'code' | 'error' | 'info' | 'ref' | 'reply' | 'task'>>);
    name: 'TaskGateError';
    /** The reply's HTTP-like code; 200 for a task outcome; 0 for the client's own errors. */
    code: number;
    /** The server's slug, the task's final status, or the client's own slug. */
    error: ErrorSlug | FailedStatus | ClientErrorSlug;
    /** The server's text, the task's error, or the client's message. */
    info?: string | null;
    /** The `ref` of the command, for an error reply. */
    ref?: string | null;
    /** The reply, when there is one (an error reply, or one the client could not use). */
    reply?: DirectReply;
    /** The task, for a task that ran and did not succeed. */
    task?: Task;
}

/** The object `taskgate.js` defines as `globalThis.TaskGate` (and `module.exports`); `taskgate.mjs` exports it. */
export interface TaskGateStatic {
    /** The client's version, e.g. `'1.0.0'`. */
    readonly version: string;
    /** Every transport, in the default order of preference. */
    readonly transports: Transport[];
    readonly Client: typeof Client;
    readonly TaskGateError: typeof TaskGateError;
    /** A client, already connecting unless `{autoConnect: false}`. */
    connect(options: ClientOptions): Client;
    /** The cursor a client for this uid would resume from (default: sessionStorage), or null. */
    storedCursor(uid: string, storage?: CursorStorage | null): number | null;
    /** Whether a status is final. */
    isFinal(status: unknown): status is FinalStatus;
}

/** The TaskGate object (the default export of `taskgate.mjs`, which also exports it by name). */
export declare const TaskGate: TaskGateStatic;
export default TaskGate;

// ------------------------------------------------------------------ the classic script's global

type _JSONValue = JSONValue;
type _TaskStatus = TaskStatus;
type _FinalStatus = FinalStatus;
type _FailedStatus = FailedStatus;
type _Transport = Transport;
type _TransportName = TransportName;
type _ServerCommand = ServerCommand;
type _ErrorSlug = ErrorSlug;
type _ErrorCode = ErrorCode;
type _ClientErrorSlug = ClientErrorSlug;
type _Task = Task;
type _TaskProgress = TaskProgress;
type _TaskDone = TaskDone;
type _TaskChange = TaskChange;
type _TaskArgs = TaskArgs;
type _ClientMessage = ClientMessage;
type _HelloMessage = HelloMessage;
type _SyntheticHello = SyntheticHello;
type _ProgressEvent = ProgressEvent;
type _DoneEvent = DoneEvent;
type _TaskEvent = TaskEvent;
type _SubmittedReply = SubmittedReply;
type _PongReply = PongReply;
type _StatusReply = StatusReply;
type _CancellingReply = CancellingReply;
type _HandlersReply = HandlersReply;
type _ClientInfo = ClientInfo;
type _ClientsReply = ClientsReply;
type _NodeReload = NodeReload;
type _ReloadedReply = ReloadedReply;
type _ErrorReply = ErrorReply;
type _SuccessReply = SuccessReply;
type _DirectReply = DirectReply;
type _ServerMessage = ServerMessage;
type _PollResponse = PollResponse;
type _CursorStorage = CursorStorage;
type _TokenSource = TokenSource;
type _EndpointOption = EndpointOption;
type _UidOptions = UidOptions;
type _TokenOptions = TokenOptions;
type _ClientOptions = ClientOptions;
type _ResolvedOptions = ResolvedOptions;
type _SubmitOptions = SubmitOptions;
type _ConnectionState = ConnectionState;
type _StateDetail = StateDetail;
type _ResumedDetail = ResumedDetail;
type _ErrorDetail = ErrorDetail;
type _ClientEventMap = ClientEventMap;
type _ClientEventType = ClientEventType;
type _ClientListener<K extends ClientEventType> = ClientListener<K>;
type _Client = Client;
type _TaskGateError = TaskGateError;
type _TaskGateStatic = TaskGateStatic;

declare global {
    /** Defined by `<script src="/taskgate.js">` (and by importing `taskgate.mjs`). */
    var TaskGate: _TaskGateStatic;
    /** The client's types, for code that uses the global: `TaskGate.Task`, `TaskGate.DoneEvent`, … */
    namespace TaskGate {
        type JSONValue = _JSONValue;
        type TaskStatus = _TaskStatus;
        type FinalStatus = _FinalStatus;
        type FailedStatus = _FailedStatus;
        type Transport = _Transport;
        type TransportName = _TransportName;
        type ServerCommand = _ServerCommand;
        type ErrorSlug = _ErrorSlug;
        type ErrorCode = _ErrorCode;
        type ClientErrorSlug = _ClientErrorSlug;
        type Task = _Task;
        type TaskProgress = _TaskProgress;
        type TaskDone = _TaskDone;
        type TaskChange = _TaskChange;
        type TaskArgs = _TaskArgs;
        type ClientMessage = _ClientMessage;
        type HelloMessage = _HelloMessage;
        type SyntheticHello = _SyntheticHello;
        type ProgressEvent = _ProgressEvent;
        type DoneEvent = _DoneEvent;
        type TaskEvent = _TaskEvent;
        type SubmittedReply = _SubmittedReply;
        type PongReply = _PongReply;
        type StatusReply = _StatusReply;
        type CancellingReply = _CancellingReply;
        type HandlersReply = _HandlersReply;
        type ClientInfo = _ClientInfo;
        type ClientsReply = _ClientsReply;
        type NodeReload = _NodeReload;
        type ReloadedReply = _ReloadedReply;
        type ErrorReply = _ErrorReply;
        type SuccessReply = _SuccessReply;
        type DirectReply = _DirectReply;
        type ServerMessage = _ServerMessage;
        type PollResponse = _PollResponse;
        type CursorStorage = _CursorStorage;
        type TokenSource = _TokenSource;
        type EndpointOption = _EndpointOption;
        type UidOptions = _UidOptions;
        type TokenOptions = _TokenOptions;
        type ClientOptions = _ClientOptions;
        type ResolvedOptions = _ResolvedOptions;
        type SubmitOptions = _SubmitOptions;
        type ConnectionState = _ConnectionState;
        type StateDetail = _StateDetail;
        type ResumedDetail = _ResumedDetail;
        type ErrorDetail = _ErrorDetail;
        type ClientEventMap = _ClientEventMap;
        type ClientEventType = _ClientEventType;
        type ClientListener<K extends _ClientEventType> = _ClientListener<K>;
        /** The instance type of `TaskGate.Client`. */
        type Client = _Client;
        /** The instance type of `TaskGate.TaskGateError`. */
        type TaskGateError = _TaskGateError;
    }
}
