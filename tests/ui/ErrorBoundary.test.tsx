// @vitest-environment jsdom
import { cleanup, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ErrorBoundary } from '../../src/ui/ErrorBoundary';

afterEach(cleanup);

function Broken(): never {
  throw new Error('the drawing failed');
}

describe('the error boundary', () => {
  it('shows what failed and a way back instead of a blank page', () => {
    const logged = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      render(
        <ErrorBoundary defaultHref="/app/">
          <Broken />
        </ErrorBoundary>,
      );
    } finally {
      logged.mockRestore();
    }
    expect(screen.getByRole('alert').textContent).toContain('the drawing failed');
    expect(screen.getByRole('button', { name: 'Reload' })).toBeTruthy();
    expect(screen.getByRole('link', { name: 'Back to the default model' }).getAttribute('href')).toBe('/app/');
  });

  it('shows its children while nothing fails', () => {
    render(
      <ErrorBoundary defaultHref="/">
        <p>fine</p>
      </ErrorBoundary>,
    );
    expect(screen.getByText('fine')).toBeTruthy();
    expect(screen.queryByRole('alert')).toBeNull();
  });
});
