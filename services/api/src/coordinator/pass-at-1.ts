/** pass@1 with a 95 % Wilson score interval (sound at 0 and at n). */
export interface PassRate {
  passAt1: number;
  n: number;
  ciLow: number;
  ciHigh: number;
}

const Z95 = 1.959963984540054;

export function passRate(passed: number, n: number): PassRate {
  if (n === 0) return { passAt1: 0, n: 0, ciLow: 0, ciHigh: 0 };
  const p = passed / n;
  const z2 = Z95 * Z95;
  const denom = 1 + z2 / n;
  const centre = (p + z2 / (2 * n)) / denom;
  const half = (Z95 * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / denom;
  return { passAt1: p, n, ciLow: Math.max(0, centre - half), ciHigh: Math.min(1, centre + half) };
}
