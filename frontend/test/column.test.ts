import assert from "node:assert/strict";
import { test } from "node:test";

import { Column } from "../src/column";

/** Where each item starts and which items a band [top, bottom] touches, summed the slow way. */
function slow(items: string[], height: (t: string) => number, top: number, bottom: number): { tops: number[]; band: string[] } {
  const tops = [0];
  const band: string[] = [];
  for (const t of items) {
    const y = tops[tops.length - 1] as number;
    if (y <= bottom && y + height(t) >= top) band.push(t);
    tops.push(y + height(t));
  }
  return { tops, band };
}

function band(col: Column<string>, top: number, bottom: number): string[] {
  const out: string[] = [];
  for (let i = col.firstEndingAtOrBelow(top); i < col.length && col.top(i) <= bottom; i++) out.push(col.at(i));
  return out;
}

test("a column sums heights from the first change on, and finds a band by them", () => {
  const col = new Column<string>(70);
  const items = Array.from({ length: 200 }, (_, i) => `c${i}`);
  const heights = new Map<string, number>();
  const height = (t: string): number => heights.get(t) ?? 70;
  col.setOrder(items);
  let seed = 7;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  for (let round = 0; round < 300; round++) {
    const op = rand(10);
    if (op < 6) {
      const t = items[rand(items.length)] as string;
      const hgt = 20 + rand(400);
      heights.set(t, hgt);
      col.setHeight(t, hgt);
    } else if (op < 7) {
      // reordered: heights stay with their items
      const i = rand(items.length);
      const j = rand(items.length);
      [items[i], items[j]] = [items[j] as string, items[i] as string];
      col.setOrder([...items]);
    } else if (op < 8) {
      // forgotten: in the order or not (a cell deleted meanwhile)
      const t = rand(4) ? (items[rand(items.length)] as string) : `gone${round}`;
      heights.delete(t);
      col.forget(t);
    } else if (op < 9) {
      // cells added and deleted: the order grows or shrinks
      if (rand(2) && items.length > 1) items.splice(rand(items.length), 1 + rand(Math.min(5, items.length - 1)));
      else items.splice(rand(items.length + 1), 0, ...Array.from({ length: 1 + rand(5) }, (_, k) => `n${round}.${k}`));
      col.setOrder([...items]);
    } else {
      // a box of no height (a cell not laid out)
      const t = items[rand(items.length)] as string;
      heights.set(t, 0);
      col.setHeight(t, 0);
    }
    const top = rand(30000) - 500;
    const bottom = top + rand(3000);
    const want = slow(items, height, top, bottom);
    assert.deepEqual(band(col, top, bottom), want.band, `round ${round}`);
    const k = rand(items.length + 1);
    assert.equal(col.top(k), want.tops[k]);
    assert.equal(col.top(items.length), want.tops[items.length]);
  }
  assert.equal(col.height("nope"), 70);
  col.clear();
  assert.equal(col.top(items.length), 70 * items.length);
  assert.equal(band(col, -100, -50).length, 0);
  assert.deepEqual(band(col, 0, 0), [items[0]]);
});

test("an empty column", () => {
  const col = new Column<string>(10);
  col.setOrder([]);
  assert.equal(col.firstEndingAtOrBelow(0), 0);
  assert.equal(col.top(0), 0);
});
