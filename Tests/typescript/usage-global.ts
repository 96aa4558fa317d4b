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

page.on('progress', (ev: TaskGate.ProgressEvent) => render(ev.task));
page.on('done', (ev: TaskGate.DoneEvent) => render(ev.task));
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
