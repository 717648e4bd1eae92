/**
 * Memory held for answers their clients have not taken yet: characters of upstream answers the
 * gateway has read (a JSON body it must hold whole to map and filter, SSE events waiting for the
 * client) and the client's socket has not taken. Each answer is bounded (8 MiB), but one caller
 * asking for many large answers and never reading them made the gateway hold them all: 90 answers
 * of 4 MiB held 1.1 GiB. A caller's share is bounded, and so is the total.
 *
 * @example
 * const budget = createAnswerBudget({ perCaller: 64 * MiB, total: 512 * MiB });
 * if (budget.take("key:abc", chunk.length) !== "ok") refuse();
 */
export interface AnswerBudget {
  /** Most characters one caller holds. */
  readonly perCaller: number;
  /**
   * Whether `caller` may hold `n` more characters now, taking nothing: "caller" past its share,
   * "full" past what is left to it of the total (see `take`).
   */
  check(caller: string, n: number): "ok" | "caller" | "full";
  /**
   * Hold `n` more characters for `caller`: "caller" past its share, "full" past the total (nothing
   * taken then). The last `perCaller` characters of the total (at most a quarter of it) are kept
   * for callers that would hold at most a quarter of a share, so a few callers at their share never
   * leave the others without (as the connection pool keeps its last connections for callers under
   * their share).
   */
  take(caller: string, n: number): "ok" | "caller" | "full";
  /** Give back `n` characters `caller` held. */
  release(caller: string, n: number): void;
  /** Characters held in all (for tests and metrics). */
  readonly held: number;
  /** Characters one caller holds. */
  heldBy(caller: string): number;
}

export interface AnswerBudgetOptions {
  /** Most characters one caller (principal) holds. */
  perCaller: number;
  /** Most characters held for all callers together. */
  total: number;
}

/**
 * Defaults: 32 Mi characters per caller (four answers of the largest size relayed, 8 MiB), 256 Mi in
 * all. An answer being mapped is in memory more than once for a moment (its bytes, its text, the
 * parsed value, the text written), so the process's peak is a few times what is held.
 */
export const DEFAULT_ANSWER_BUFFER_PER_CALLER = 32 * 1024 * 1024;
export const DEFAULT_ANSWER_BUFFER = 256 * 1024 * 1024;

export function createAnswerBudget(options: AnswerBudgetOptions): AnswerBudget {
  const { perCaller, total } = options;
  const held = new Map<string, number>();
  let all = 0;
  const headroom = Math.min(perCaller, Math.floor(total / 4));
  const check = (caller: string, n: number): "ok" | "caller" | "full" => {
    const mine = held.get(caller) ?? 0;
    if (mine + n > perCaller) return "caller";
    const limit = mine + n <= perCaller / 4 ? total : total - headroom;
    return all + n > limit ? "full" : "ok";
  };
  return {
    perCaller,
    check,
    take(caller, n) {
      const verdict = check(caller, n);
      if (verdict !== "ok") return verdict;
      held.set(caller, (held.get(caller) ?? 0) + n);
      all += n;
      return "ok";
    },
    release(caller, n) {
      const mine = held.get(caller);
      if (mine === undefined || n <= 0) return;
      const back = Math.min(n, mine);
      all -= back;
      if (mine - back === 0) held.delete(caller);
      else held.set(caller, mine - back);
    },
    get held() {
      return all;
    },
    heldBy(caller) {
      return held.get(caller) ?? 0;
    },
  };
}
