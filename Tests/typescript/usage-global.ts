// Code of a page that loads the classic script (<script src="/taskgate.js">) and uses the global TaskGate.
// Not a module: no import or export. Must type-check (tsc -p Tests/typescript).

const page = TaskGate.connect({ uid: 'alice', transports: ['websocket', 'long-poll'] });
const viaWindow: TaskGate.Client = window.TaskGate.connect({ uid: 'alice' });
const viaGlobalThis = new globalThis.TaskGate.Client({ token: 'eyJ...' });

function render(task: TaskGate.Task): void {
    const bar = document.querySelector('progress');
    if (bar) bar.value = task.progress;
    const out = document.getElementById('out');
    if (out && task.status === 'succeeded') out.textContent = JSON.stringify(task.result);
}

// Events carry what changed: merged into the whole task of the submitted reply.
const tasks: { [id: string]: TaskGate.Task } = {};
function merge(change: TaskGate.TaskChange): void {
    const task = tasks[change.id];
    if (task) render((tasks[change.id] = { ...task, ...change }));
}
page.on('reply', (reply: TaskGate.DirectReply) => {
    if (reply.type === 'submitted') render((tasks[reply.task.id] = reply.task));
});
page.on('progress', (ev: TaskGate.ProgressEvent) => merge(ev.task));
page.on('done', (ev: TaskGate.DoneEvent) => {
    const change: TaskGate.TaskDone = ev.task;
    merge(change);
});
const progressOnly: TaskGate.TaskProgress = { id: 'alice~x', status: 'running', progress: 0.5, attempts: 1 };
merge(progressOnly);
page.on('state', (s: TaskGate.StateDetail) => console.log(s.state + ' via ' + s.transport));

async function run(): Promise<void> {
    try {
        const task = await page.submit('sleep', { ms: 2000 }, { onProgress: render });
        render(task);
    } catch (err) {
        if (err instanceof TaskGate.TaskGateError && err.task) {
            const failed: TaskGate.FailedStatus | TaskGate.ErrorSlug | TaskGate.ClientErrorSlug = err.error;
            console.log(failed, err.task.error);
        }
    }
}
console.log(viaWindow, viaGlobalThis, run, TaskGate.version);
