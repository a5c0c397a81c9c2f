/**
 * Budgets are fixed windows aligned on the clock: a test that spends a budget and expects the next
 * request refused says nothing when a new window starts in between (the refusal becomes a fresh
 * budget's admission). Resolves at once when at least `needMs` of the current window is left, else
 * when the next window starts.
 */
export function roomInWindow(windowMs: number, needMs: number): Promise<void> {
  const left = windowMs - (Date.now() % windowMs);
  if (left >= needMs) return Promise.resolve();
  return new Promise((resolve) => setTimeout(resolve, left + 1));
}
