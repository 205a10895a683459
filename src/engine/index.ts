// The engine's public entry.
export type * from './types';
export { BadInputError, CancelledError, EngineError, ENGINE_ERROR_CODES, isEngineErrorCode, throwIfCancelled, toEngineError } from './errors';
export { RunQueue } from './queue';
export { checkSeed, checkSettings, describeRange, MAX_SEED, seedAfter, SETTING_RANGES } from './samplingSettings';
export type { NumericSetting, SettingRange } from './samplingSettings';
export type { BackendRequest, GpuLike, Ort } from './backend';
export type { PackageIO } from './readers';
export { createFetchIO, createFileListIO, createDirectoryHandleIO, createFileMapIO, MODEL_CACHE_NAME, packageBaseUrl } from './readers';
export { listCachedModels, deleteCachedModel, persistStorage, estimateStorage } from './cache';
export type { CachedModel, CacheOptions, StorageManagerLike } from './cache';
export { checkModelFits, formatBytes } from './preflight';
export type { PreflightEnv, PreflightResult, GpuLimits } from './preflight';
export type { PackageRequirements } from './manifest';
export { encodePng, provenanceText, readPngText } from './png';
export * from './load';
