// Wrong uses of the browser client: `tsc -p Tests/typescript/tsconfig.wrong.json` must fail with exactly the error
// code marked on each line below, and with nothing else (Tests/e2e/test_typescript.py).
import TaskGate, { type Task } from '/taskgate.mjs';

const tg = TaskGate.connect({ uid: 'alice' });

TaskGate.connect({ transports: ['websocket'] });                 // error TS2345
TaskGate.connect({ uid: 'alice', transports: ['carrier-pigeon'] }); // error TS2322
TaskGate.connect({ uid: 'alice', replay: 'some' });              // error TS2322
TaskGate.connect({ uid: 'alice', reconectDelay: 100 });          // error TS2345
tg.submit('status', { id: 'x' });                                // error TS2345
tg.submit('sleep', { ms: 1 }, { onProgres: () => undefined });   // error TS2345
tg.on('finished', () => undefined);                              // error TS2345
tg.on('progress', (ev) => ev.task.progres);                      // error TS2551
tg.on('done', (ev) => ev.task.cmd);                              // error TS2339
tg.on('progress', (ev) => ev.task.args);                         // error TS2339
tg.on('hello', (h) => h.seq);                                    // error TS2339
tg.on('state', (s) => s.state === 'open');                       // error TS2367
const state: 'open' | 'closed' = tg.state;                       // error TS2322
const n: number = tg.cursor;                                     // error TS2322
tg.status();                                                     // error TS2554

async function wrong(): Promise<void> {
    const task: Task = await tg.ping();                          // error TS2322
    const handlers: number = await tg.handlers();                // error TS2322
    const pong = await tg.send('ping');
    pong.task;                                                   // error TS2339
    const status: 'done' = task.status;                          // error TS2322
    console.log(handlers, status);
}

console.log(state, n, wrong);
export {};
