// The engine: HART text-to-image in pure TypeScript (no DOM, no React), running in a Web Worker
// or in Node. This file is its only door: src/app, src/ui, src/cli and workers/ import the engine
// from here, or Node-only readers from node.ts. The engine imports nothing of src/app, src/ui or
// workers/. Inside: load.ts loads a package (manifest.ts reads its manifest, modelPackage.ts
// verifies its files, readers.ts and node.ts read them, cache.ts keeps them), pipeline.ts runs
// HART's sampling loop over the graph stages, samplingSettings.ts and errors.ts own the rules a
// request and a failure follow.
export type * from './types';
export { BadInputError, CancelledError, CheckpointError, EngineError, ENGINE_ERROR_CODES, EXIT_STATUS, isEngineErrorCode, LOADING_CANCELLED, throwIfCancelled, toEngineError } from './errors';
export { RunQueue } from './queue';
export { checkImageFromScale, checkScaleFrom, checkSeed, imageFromScaleRange, checkSettings, describeRange, HART_DEFAULTS, isTopKSchedule, MAX_SEED, scaleFromRange, seedAfter, SETTING_RANGES, topKAt } from './samplingSettings';
export type { NumericSetting, SettingRange } from './samplingSettings';
export type { BackendRequest, GpuLike, Ort } from './backend';
export type { FetchPolicy, PackageIO } from './readers';
export { createFetchIO, FETCH_POLICY, createFileListIO, createDirectoryHandleIO, createFileMapIO, MODEL_CACHE_NAME, packageBaseUrl, importedPackageUrl, isImportedPackageUrl } from './readers';
export { listCachedModels, deleteCachedModel, persistStorage, estimateStorage } from './cache';
export type { CachedModel, CacheOptions, StorageManagerLike } from './cache';
export { checkModelFits, checkNeedsFit, formatBytes } from './preflight';
export { CATALOG_FORMAT, describeNeeds, parseCatalog } from './catalog';
export type { CatalogEntry, CatalogNeeds, ImportSource, PackageSource } from './catalog';
export type { PreflightEnv, PreflightResult, GpuLimits } from './preflight';
export type { PackageRequirements } from './manifest';
export { encodePng, provenanceText, readPngText } from './png';
export { centreSquare, checkInitImage, initImagePixels } from './initImage';
export { quotePrompt } from './textEncoder';
export * from './load';
export type { Source, HttpSourceOptions } from './import/source';
export { createBlobSource, createDirectoryHandleSource, createHttpSource, huggingFaceRepo, isUrl, readAll, readJson, subSource } from './import/source';
export type { StoredDtype, TensorEntry, WeightFile } from './import/weightFile';
export { findWeights, openWeights } from './import/weightFile';
export type { PreviewMap, PreviewFitInput } from './import/previewFit';
export { fitPreview, fitPreviewOfPackage, previewImageCount } from './import/previewFit';
export type { ImportOptions, ImportProgress, ImportResult } from './import/importer';
export { importPackage } from './import/importer';
export type { Hasher, Sink, SinkFile } from './import/sink';
export { createMemorySink, sha256Hasher } from './import/sink';
export type { CacheSink, CacheSinkOptions } from './import/cacheSink';
export { createCacheSink } from './import/cacheSink';
export type { ImportModelOptions, ImportModelProgress, ImportModelResult, ImportPhase } from './import/toCache';
export { importModelToCache } from './import/toCache';
export type { WeightMapFile } from './import/skeleton';
export { readWeightMap, WEIGHT_MAP_FILE } from './import/skeleton';
