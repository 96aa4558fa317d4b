// Code using the browser client as an ES module: everything here must type-check (tsc -p Tests/typescript).
import TaskGate, {
    Client,
    TaskGateError,
    TaskGate as Named,
    type ClientEventMap,
    type DoneEvent,
    type ErrorDetail,
    type HelloMessage,
    type ProgressEvent,
    type ResumedDetail,
    type ServerMessage,
    type StateDetail,
    type SyntheticHello,
    type Task,
    type TaskChange,
    type TaskDone,
    type TaskProgress,
    type TaskStatus,
    type Transport,
} from '/taskgate.mjs';
import Same, { Client as SameClient } from '../../public/taskgate.js';

const sameObject: typeof TaskGate = Named;
const sameAgain: typeof Named = Same;
const sameClass: typeof Client = SameClient;
void sameObject, sameAgain, sameClass;

// ---- connecting

const tg: Client = TaskGate.connect({ uid: 'alice' });
const withEverything = new Client({
    uid: 'bob',
    url: 'https://tasks.example.com/taskgate',
    transports: ['ws', 'sse', 'poll'],
    storage: localStorage,
    storageKey: 'my.cursor',
    replay: 'all',
    cursor: 41,
    webSocketUrl: ({ transport, url }) => `${url.replace('https', 'wss')}/${transport}`,
    sseUrl: 'https://tasks.example.com/sse',
    pollUrl: (info) => info.url + '/poll',
    reconnectDelay: 250,
    maxReconnectDelay: 10000,
    jitter: 0.25,
    upgradeInterval: 0,
    helloTimeout: 5000,
    pollTimeout: 20,
    requestTimeout: 15000,
    keepAlive: 0,
    admin: true,
    autoConnect: false,
    withCredentials: true,
    doneCache: 100,
});
const memoryOnly = TaskGate.connect({ uid: 'carol', storage: null });
const tokenClient = TaskGate.connect({ token: 'eyJ...' });
const refreshing = TaskGate.connect({
    token: () => fetch('/my-app/taskgate-token', { credentials: 'same-origin' }).then((r) => r.text()),
});
const syncToken = TaskGate.connect({ token: () => 'eyJ...' });
const customStorage = TaskGate.connect({
    uid: 'dave',
    storage: { getItem: (key: string) => (key ? '5' : null), setItem: (_key: string, _value: string) => undefined },
});

// ---- properties

const state: 'connecting' | 'connected' | 'disconnected' = tg.state;
const transport: Transport | null = tg.transport;
const cursor: number | null = tg.cursor;
const uid: string | null = tokenClient.uid;
const connected: boolean = tg.connected;
const url: string = tg.url;
const transports: Transport[] = withEverything.transports;
const pollTimeout: number = withEverything.options.pollTimeout;
const key: string | null = memoryOnly.storageKey();
void state, transport, cursor, uid, connected, url, transports, pollTimeout, key;

// ---- commands

async function commands(): Promise<void> {
    const task: Task = await tg.submit('sleep', { ms: 2000 }, {
        onProgress: (t, ev) => console.log(t.progress, t.args, ev.seq, ev.task.attempts),
        onSubmitted: (t, reply) => console.log(t.id, reply.duplicate, reply.code),
        id: 'export-4711',
        timeoutMs: 10000,
        maxAttempts: 3,
    });
    const result = task.result;
    const status: TaskStatus = task.status;
    console.log(result, status, task.uid ?? 'no uid', task.finishedAt?.length, task.attempts, task.node);
    await tg.submit('echo');
    await tg.submit('echo', null);
    await tg.submit('report', { month: '2026-11', id: 7, timeout_ms: null });
    const handlerName: string = 'primes';
    await tg.submit(handlerName, { limit: 100 });

    const same: Task = await tg.status('alice~export-4711');
    const cancelling: Task = await tg.cancel(same.id);
    const rtt: number = await tg.ping();
    const names: string[] = await tg.handlers();
    console.log(cancelling.status, rtt, names.join());

    const pong = await tg.send('ping');
    const pongType: 'pong' = pong.type;
    const statusReply = await tg.send('status', { id: 'job-1' });
    const clients = await tg.send('clients');
    const firstRemote: string | undefined = clients.clients[0]?.remote;
    const reloaded = await tg.send('reload', { node: 'node-b' });
    const generation: number = reloaded.generation;
    const nodeErrors = (reloaded.nodes ?? []).map((n) => n.error);
    const raw = await tg.send('sleep', { ms: 1 });
    if (raw.type === 'submitted') {
        const dup: boolean = raw.duplicate;
        console.log(dup, raw.task.id);
    }
    console.log(pongType, statusReply.task.status, firstRemote, generation, nodeErrors);

    const ready: Client = await withEverything.open().ready(5000);
    ready.retryNow();
    ready.close();

    try {
        await tg.submit('fail', { message: 'boom' });
    } catch (e) {
        if (e instanceof TaskGateError) {
            const code: number = e.code;
            const slug: string = e.error;
            const info: string | null | undefined = e.info;
            const failedTask: Task | undefined = e.task;
            const name: 'TaskGateError' = e.name;
            if (e.reply && e.reply.type === 'error') {
                const replyCode: 400 | 401 | 403 | 404 | 405 | 409 | 413 | 429 | 500 | 503 = e.reply.code;
                console.log(replyCode);
            }
            console.log(code, slug, info, failedTask?.error, name, e.message, e.stack);
        }
    }
    const made = new TaskGate.TaskGateError('made here', { code: 0, error: 'closed', info: 'made here' });
    const asError: Error = made;
    console.log(asError);
}

// ---- events

const off: () => void = tg.on('done', (ev: DoneEvent, event) => {
    const outcome: TaskStatus = ev.task.status;
    const change: TaskDone = ev.task;
    const detail: DoneEvent = event.detail;
    console.log(outcome, change.result, change.error, change.id, detail.seq, ev.code, ev.info);
});
off();
tg.on('progress', (ev: ProgressEvent) => {
    const change: TaskProgress = ev.task;
    console.log(change.id, change.status, change.progress, change.attempts);
});
// Events say what changed: merged into the whole task of the submitted (or status) reply.
const known: { [id: string]: Task } = {};
function merge(change: TaskChange): Task | undefined {
    const task = known[change.id];
    return task ? (known[change.id] = { ...task, ...change }) : undefined;
}
tg.on('reply', (reply) => {
    if (reply.type === 'submitted' || reply.type === 'status') known[reply.task.id] = reply.task;
});
tg.on('progress', (ev) => console.log(merge(ev.task)?.cmd));
tg.on('done', (ev) => console.log(merge(ev.task)?.args));
tg.on('state', function (s: StateDetail) {
    const self: Client = this;
    console.log(self.state, s.state, s.transport, s.retryIn, s.attempt, s.upgraded, s.from, s.closed, s.reason);
});
tg.on('hello', (h: HelloMessage | SyntheticHello) => {
    if (h.transport === 'long-poll') {
        const synthetic: true = h.synthetic;
        const head: number | null = h.head;
        console.log(synthetic, head);
    } else {
        const head: number = h.head;
        console.log(head, h.admin, h.reset, h.uid);
    }
});
tg.on('resumed', (r: ResumedDetail) => {
    if (!r.complete) console.log(r.reset, r.cursor, r.latest, r.transport, r.fresh);
});
tg.on('reply', (reply) => {
    switch (reply.type) {
        case 'error':
            console.log(reply.code, reply.error, reply.info, reply.ref);
            break;
        case 'submitted':
        case 'status':
        case 'cancelling':
            console.log(reply.task.id);
            break;
        case 'handlers':
            console.log(reply.handlers.length);
            break;
        default:
            console.log(reply.type);
    }
});
tg.on('error', (err: ErrorDetail) => console.log(err.message, err.transport, err.reply?.error, err.upgrade));
tg.addEventListener('done', (e) => console.log(e.detail.task.result));
tg.addEventListener('custom-event', (e: Event) => console.log(e.type));
const listener = (e: CustomEvent<ClientEventMap['state']>) => console.log(e.detail.state);
tg.addEventListener('state', listener);
tg.removeEventListener('state', listener);

// ---- the TaskGate object's functions, and the messages

const version: string = TaskGate.version;
const all: Transport[] = TaskGate.transports;
const stored: number | null = TaskGate.storedCursor('alice', localStorage);
const storedDefault: number | null = TaskGate.storedCursor('alice');
const maybeStatus: string = 'succeeded';
if (TaskGate.isFinal(maybeStatus)) {
    const final: 'succeeded' | 'failed' | 'cancelled' | 'timed_out' = maybeStatus;
    console.log(final);
}
console.log(version, all, stored, storedDefault);

function handle(msg: ServerMessage): string {
    switch (msg.type) {
        case 'hello':
            return `${msg.uid} via ${msg.transport}`;
        case 'progress':
        case 'done':
            return `${msg.seq}: ${msg.task.status}`;
        case 'error':
            return `${msg.code} ${msg.error}`;
        default:
            return msg.type;
    }
}
console.log(handle, commands, refreshing, syncToken, customStorage);

// @ts-expect-error a uid or a token is required
TaskGate.connect({});
// @ts-expect-error ping is a server command, not a handler
tg.submit('ping');
// @ts-expect-error there is no 'finished' event
tg.on('finished', () => undefined);
// @ts-expect-error a done event's task is what changed, not the whole task: no args
tg.on('done', (ev) => ev.task.args);
// @ts-expect-error hello reports the latest seq as head: only events carry seq
tg.on('hello', (h) => h.seq);

export {};
