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
  /** Hold `n` more characters for `caller`: "caller" past its share, "full" past the total (nothing taken then). */
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
  return {
    take(caller, n) {
      const mine = held.get(caller) ?? 0;
      if (mine + n > perCaller) return "caller";
      if (all + n > total) return "full";
      held.set(caller, mine + n);
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
