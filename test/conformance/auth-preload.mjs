// Preload for the conformance suite (`node --import ./auth-preload.mjs …`): the suite sends no
// credentials, so this installs an undici global dispatcher that adds
// `Authorization: Bearer $MCPGATE_CONFORMANCE_KEY` to every request it makes.
//
// Why one dispatcher covers everything: the suite talks HTTP through Node's built-in fetch (the
// SDK client transport and its raw fetches) and through the `undici` npm package's `request`
// (dns-rebinding-protection). Node 22's bundled undici (6.x) reads the global dispatcher from
// `globalThis[Symbol.for('undici.globalDispatcher.1')]`; undici 7's `setGlobalDispatcher` writes
// that symbol as well as `…globalDispatcher.2`, so both paths pick up the same dispatcher.
//
// The header is only added to requests for MCPGATE_CONFORMANCE_ORIGIN (the gateway), so the
// key never travels anywhere else, and an Authorization header already present is left alone.
import { Agent, setGlobalDispatcher } from "undici";

const key = process.env.MCPGATE_CONFORMANCE_KEY;
const allowedOrigin = process.env.MCPGATE_CONFORMANCE_ORIGIN;
if (!key) throw new Error("auth-preload: MCPGATE_CONFORMANCE_KEY is not set");
if (!allowedOrigin) throw new Error("auth-preload: MCPGATE_CONFORMANCE_ORIGIN is not set");
const origin = new URL(allowedOrigin).origin;
const authorization = `Bearer ${key}`;

/** Returns the request headers with Authorization added, in the shape they came in. */
function withAuthorization(headers) {
  if (headers == null) return { authorization };
  if (Array.isArray(headers)) {
    // Either a flat [name, value, name, value] list (what fetch passes) or a list of pairs.
    const flat = headers.length === 0 || !Array.isArray(headers[0]) ? headers : headers.flat();
    for (let i = 0; i < flat.length; i += 2) {
      if (String(flat[i]).toLowerCase() === "authorization") return headers;
    }
    return [...flat, "authorization", authorization];
  }
  if (typeof headers[Symbol.iterator] === "function") {
    return withAuthorization([...headers].flat());
  }
  for (const name of Object.keys(headers)) {
    if (name.toLowerCase() === "authorization") return headers;
  }
  return { ...headers, authorization };
}

function requestOrigin(opts) {
  try {
    return new URL(String(opts.origin)).origin;
  } catch {
    return undefined;
  }
}

const addAuthorization = (dispatch) => (opts, handler) =>
  requestOrigin(opts) === origin
    ? dispatch({ ...opts, headers: withAuthorization(opts.headers) }, handler)
    : dispatch(opts, handler);

setGlobalDispatcher(new Agent().compose(addAuthorization));
