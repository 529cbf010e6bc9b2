/**
 * Where each cell of a windowed notebook stands, as the page lays it out (NotebookView:
 * the cells in order, one under the other). Heights are kept by cell, so they outlive a
 * reorder; where each cell starts is their running sum, kept in an array and summed again
 * only from the first cell whose height changed. Finding the cells on screen is then a
 * binary search instead of a walk through all the cells every frame.
 */
export class Column<T> {
  private heights = new Map<T, number>();
  private items: T[] = [];
  private index = new Map<T, number>();
  private hs = new Float64Array(0);
  /** tops[i]: where item i starts; tops[length]: the end of the last */
  private tops = new Float64Array(1);
  /** tops[0..valid] are right */
  private valid = 0;

  /** `fallback`: the height of an item not yet measured */
  constructor(private readonly fallback: number) {}

  get length(): number {
    return this.items.length;
  }

  /** The items, in order. */
  setOrder(items: T[]): void {
    this.items = items;
    this.index = new Map(items.map((t, i) => [t, i]));
    this.hs = new Float64Array(items.length);
    items.forEach((t, i) => (this.hs[i] = this.heights.get(t) ?? this.fallback));
    this.tops = new Float64Array(items.length + 1);
    this.valid = 0;
  }

  at(i: number): T {
    return this.items[i] as T;
  }

  indexOf(item: T): number | undefined {
    return this.index.get(item);
  }

  height(item: T): number {
    return this.heights.get(item) ?? this.fallback;
  }

  setHeight(item: T, height: number): void {
    this.heights.set(item, height);
    const i = this.index.get(item);
    if (i === undefined || this.hs[i] === height) return;
    this.hs[i] = height;
    if (i < this.valid) this.valid = i;
  }

  /** Forget an item's height (it is measured again when it is next in the page). */
  forget(item: T): void {
    if (this.index.has(item)) this.setHeight(item, this.fallback);
    this.heights.delete(item);
  }

  /** Forget every height. */
  clear(): void {
    this.heights.clear();
    this.setOrder(this.items);
  }

  /** Where item `i` starts (i = length: where the last ends). */
  top(i: number): number {
    if (i > this.valid) {
      const { hs, tops } = this;
      for (let k = this.valid; k < i; k++) tops[k + 1] = (tops[k] as number) + (hs[k] as number);
      this.valid = i;
    }
    return this.tops[i] as number;
  }

  /** The first item that ends at `y` or below (length if none does). */
  firstEndingAtOrBelow(y: number): number {
    let lo = 0;
    let hi = this.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.top(mid + 1) >= y) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}
