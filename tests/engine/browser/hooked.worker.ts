// The app's engine worker with the parity tests' hooks (testHooks.ts) around the engine: what
// workerPage.ts drives. The app's own worker (workers/engine.worker.ts) has no hooks.
import { exposeEngine } from '../../../workers/exposeEngine';
import { withTestHooks } from './testHooks';

exposeEngine({ wrapEngine: withTestHooks });
