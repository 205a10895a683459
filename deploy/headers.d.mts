export declare const ISOLATION_HEADERS: Record<'Cross-Origin-Opener-Policy' | 'Cross-Origin-Embedder-Policy', string>;
export declare const CONTENT_SECURITY_POLICY: string;
export declare const CONTENT_SECURITY_POLICY_HEADER: string;
export declare function headersFile(): string;
