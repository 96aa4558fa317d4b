// TaskGate browser client as an ES module:
//
//   import { TaskGate } from '/taskgate.mjs';      // or: import TaskGate from '/taskgate.mjs';
//
// The code lives in taskgate.js (a classic script that defines globalThis.TaskGate, so that
// <script src="/taskgate.js"> works without modules). Importing it here runs it once; both ways
// give the same object. See docs/client.md.
import './taskgate.js';

const TaskGate = globalThis.TaskGate;
const { Client, TaskGateError } = TaskGate;

export { TaskGate, Client, TaskGateError };
export default TaskGate;
