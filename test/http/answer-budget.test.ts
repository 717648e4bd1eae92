import { describe, expect, it } from "vitest";
import { createAnswerBudget } from "../../src/http/answer-budget.js";

describe("createAnswerBudget", () => {
  it("bounds each caller by its share and all callers by the total, taking nothing it refuses", () => {
    const b = createAnswerBudget({ perCaller: 10, total: 15 });
    expect(b.take("a", 6)).toBe("ok");
    expect(b.take("a", 5)).toBe("caller");
    expect(b.heldBy("a")).toBe(6);
    expect(b.take("b", 9)).toBe("ok");
    // b is under its share, but the total would pass 15.
    expect(b.take("b", 1)).toBe("full");
    expect(b.held).toBe(15);
    b.release("a", 6);
    expect(b.take("b", 1)).toBe("ok");
    expect(b.heldBy("a")).toBe(0);
  });

  it("never gives back more than a caller holds (a late release after a close is harmless)", () => {
    const b = createAnswerBudget({ perCaller: 10, total: 10 });
    b.take("a", 4);
    b.release("a", 100);
    b.release("a", 1);
    b.release("nobody", 5);
    expect(b.held).toBe(0);
    expect(b.take("a", 10)).toBe("ok");
  });
});
