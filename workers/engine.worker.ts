// The app's engine worker: the engine host over comlink, nothing added (exposeEngine.ts).
import { exposeEngine } from './exposeEngine';

exposeEngine();
