import { describe, expect, it } from "vitest";
import { createAnswerBudget } from "../../src/http/answer-budget.js";

describe("createAnswerBudget", () => {
  it("bounds each caller by its share, taking nothing it refuses", () => {
    const b = createAnswerBudget({ perCaller: 10, total: 100 });
    expect(b.take("a", 6)).toBe("ok");
    expect(b.take("a", 5)).toBe("caller");
    expect(b.heldBy("a")).toBe(6);
    expect(b.check("a", 4)).toBe("ok");
    expect(b.check("a", 5)).toBe("caller");
    b.release("a", 6);
    expect(b.take("a", 10)).toBe("ok");
  });

  it("keeps the last share of the total for callers that would hold at most a quarter of a share", () => {
    const b = createAnswerBudget({ perCaller: 8, total: 32 });
    // Callers holding large answers fill the total but its last share (8)…
    expect(b.take("a", 7)).toBe("ok");
    expect(b.take("b", 7)).toBe("ok");
    expect(b.take("c", 7)).toBe("ok");
    expect(b.take("d", 7)).toBe("full");
    // …which callers holding little may still use, up to the total.
    for (const who of ["d", "e", "f", "g", "h"]) expect(b.take(who, 2)).toBe("ok");
    expect(b.held).toBe(31);
    expect(b.take("i", 2)).toBe("full");
    expect(b.check("i", 0)).toBe("ok");
    // A small answer that would make a caller hold more than a quarter share is a large one.
    expect(b.take("d", 1)).toBe("full");
  });

  it("never gives back more than a caller holds (a late release after a close is harmless)", () => {
    const b = createAnswerBudget({ perCaller: 10, total: 40 });
    b.take("a", 4);
    b.release("a", 100);
    b.release("a", 1);
    b.release("nobody", 5);
    expect(b.held).toBe(0);
    expect(b.take("a", 10)).toBe("ok");
  });
});
