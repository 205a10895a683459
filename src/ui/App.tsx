import { BackendBadge } from './BackendBadge';
import { ErrorBanner } from './ErrorBanner';
import { Gallery } from './Gallery';
import { ImageStage } from './ImageStage';
import { ModelPanel } from './ModelPanel';
import { PromptBar } from './PromptBar';
import { SettingsPanel } from './SettingsPanel';

export function App() {
  return (
    <div className="app">
      <header className="topbar">
        <div className="brand">
          <span className="logo" aria-hidden="true" />
          <div>
            <h1>HART Web</h1>
            <p className="tagline">Text to image, coarse to fine, on your own device</p>
          </div>
        </div>
        <BackendBadge />
      </header>
      <ErrorBanner />
      <main className="layout">
        <div className="workspace">
          <PromptBar />
          <ImageStage />
        </div>
        <aside className="sidebar">
          <SettingsPanel />
          <ModelPanel />
        </aside>
      </main>
      <Gallery />
      <footer className="footer muted">
        HART (Tang et al., 2024): a hybrid autoregressive transformer. Everything runs in this tab; nothing is uploaded.
      </footer>
    </div>
  );
}
