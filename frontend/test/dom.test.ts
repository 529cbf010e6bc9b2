import assert from "node:assert/strict";
import { test } from "node:test";

import { userColor } from "../src/dom";

/** "hsl(h, s%, l%)" → its relative luminance (WCAG 2). */
function luminance(hsl: string): number {
  const m = /^hsl\((\d+), (\d+)%, (\d+)%\)$/.exec(hsl);
  assert.ok(m, hsl);
  const [h, s, l] = [Number(m[1]), Number(m[2]) / 100, Number(m[3]) / 100];
  const a = s * Math.min(l, 1 - l);
  const channel = (n: number): number => {
    const k = (n + h / 30) % 12;
    const c = l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1));
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * channel(0) + 0.7152 * channel(8) + 0.0722 * channel(4);
}

test("every user colour has 4.5:1 contrast with white (initials on it, names on white)", () => {
  const worst = new Map<number, string>();
  for (let i = 0; i < 5000; i++) {
    const color = userColor(`user${i}`);
    const ratio = 1.05 / (luminance(color) + 0.05);
    worst.set(Math.round(ratio * 100), color);
    assert.ok(ratio >= 4.5, `${color} (user${i}): ${ratio.toFixed(2)}:1`);
  }
  assert.ok(worst.size > 10, "the colours differ between users");
});
