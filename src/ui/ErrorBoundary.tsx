import { Component, type ReactNode } from 'react';

interface Props {
  children: ReactNode;
  /** The page without its options: where "Back to the default model" goes. */
  defaultHref: string;
}

interface State {
  message?: string;
}

/** A failure while drawing the page shows what happened and a way back, never a blank page. */
export class ErrorBoundary extends Component<Props, State> {
  state: State = {};

  static getDerivedStateFromError(error: unknown): State {
    return { message: error instanceof Error ? error.message : String(error) };
  }

  render() {
    if (this.state.message === undefined) return this.props.children;
    return (
      <div role="alert" className="error-banner app-failed">
        <p>
          <strong>HART Web stopped.</strong> {this.state.message}
        </p>
        <div className="row">
          <button type="button" onClick={() => window.location.reload()}>
            Reload
          </button>
          <a href={this.props.defaultHref}>Back to the default model</a>
        </div>
      </div>
    );
  }
}
