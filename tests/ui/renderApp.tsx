// The whole page over a test harness's store, as main.tsx mounts it.
import { render } from '@testing-library/react';
import { App } from '../../src/ui/App';
import { StoreProvider } from '../../src/ui/storeContext';
import type { Harness } from '../app/storeHarness';

export function renderApp(harness: Harness) {
  return render(
    <StoreProvider store={harness.store}>
      <App />
    </StoreProvider>,
  );
}
