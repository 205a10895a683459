// Vite's client types: import.meta.env, CSS imports and `?url` asset imports.
/// <reference types="vite/client" />
