#!/usr/bin/env node
// A stand-in for the Python service's browser client, for the e2e tests:
// the same observable behaviour as its generated fetch-based SSE client
// (`createSseClient`, used with `sseMaxRetryAttempts: 3`) and the execution
// view that reads it. Written for these tests; it runs on Node's own fetch
// (undici), so what counts as a failed read is decided by a real fetch.
//
//   node fetch_client.mjs URL [--header 'Name: value']... [--until-terminal]
//        [--max-attempts 3] [--timeout-ms 60000]
//
// Behaviour:
// - fetch with `credentials: 'include'` (Node has no cookie jar: pass the
//   cookie with --header 'cookie: access_token=...');
// - parses `data:` / `event:` / `id:` / `retry:`; events are separated by a
//   blank line (CRLF and CR count as LF); `data:` lines are joined with LF
//   and parsed as JSON when they are JSON;
// - once an `id:` was seen, every reconnect sends `Last-Event-ID`;
// - reconnects ONLY on a network error, a non-2xx answer or a failed read;
//   a body that ends cleanly means done;
// - attempts are counted over the whole run and never reset: after the
//   `--max-attempts`th failure it gives up;
// - backoff before attempt n+1: retry * 2^(n-1) ms (retry from `retry:`,
//   3000 by default), at most 30000 ms.
// - --until-terminal: like the execution view, stop reading at the first
//   terminal event (result_stored, execution_failed, execution_timeout,
//   result_failed); without one the view shows "Connection to server lost."
//
// Output: one JSON object per line on stdout:
//   {"kind":"open","attempt":1,"status":200,"last_event_id":null}
//   {"kind":"event","attempt":1,"event":null,"id":"1-0","retry":3000,"data":{...}}
//   {"kind":"error","attempt":1,"error":"TypeError: terminated","cause":"...","backoff_ms":3000,"giving_up":false}
//   {"kind":"end","reason":"clean"|"terminal"|"gave_up"|"timeout","attempts":2,"ui_error":null|"Connection to server lost."}

const TERMINAL = new Set(['result_stored', 'execution_failed', 'execution_timeout', 'result_failed']);

function parseArgs(argv) {
  const opts = { url: null, headers: {}, untilTerminal: false, maxAttempts: 3, timeoutMs: 60000 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--header') {
      const h = argv[++i];
      const at = h.indexOf(':');
      opts.headers[h.slice(0, at).trim()] = h.slice(at + 1).trim();
    } else if (a === '--until-terminal') {
      opts.untilTerminal = true;
    } else if (a === '--max-attempts') {
      opts.maxAttempts = Number(argv[++i]);
    } else if (a === '--timeout-ms') {
      opts.timeoutMs = Number(argv[++i]);
    } else if (opts.url === null) {
      opts.url = a;
    } else {
      throw new Error(`unexpected argument ${a}`);
    }
  }
  if (!opts.url) throw new Error('usage: fetch_client.mjs URL [options]');
  return opts;
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function describe(error) {
  const cause = error && error.cause ? String(error.cause.code || error.cause.message || error.cause) : null;
  return { error: String(error), cause };
}

/** Parses one blank-line-separated block; updates `state` (id, retry). */
function parseBlock(block, state) {
  const data = [];
  let event = null;
  for (const line of block.split('\n')) {
    if (line.startsWith('data:')) data.push(line.slice(5).replace(/^\s*/, ''));
    else if (line.startsWith('event:')) event = line.slice(6).replace(/^\s*/, '');
    else if (line.startsWith('id:')) state.lastEventId = line.slice(3).replace(/^\s*/, '');
    else if (line.startsWith('retry:')) {
      const n = Number.parseInt(line.slice(6).replace(/^\s*/, ''), 10);
      if (!Number.isNaN(n)) state.retry = n;
    }
  }
  if (data.length === 0) return null;
  const raw = data.join('\n');
  let parsed = raw;
  try {
    parsed = JSON.parse(raw);
  } catch {
    // not JSON: delivered as text
  }
  return { event, data: parsed };
}

async function run(opts) {
  const state = { lastEventId: undefined, retry: 3000 };
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error('timeout')), opts.timeoutMs);
  let attempt = 0;
  let terminal = false;
  let reason = 'clean';
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  while (!controller.signal.aborted) {
    attempt++;
    const headers = new Headers(opts.headers);
    if (state.lastEventId !== undefined) headers.set('Last-Event-ID', state.lastEventId);
    try {
      const response = await fetch(opts.url, {
        credentials: 'include',
        redirect: 'follow',
        headers,
        signal: controller.signal,
      });
      emit({ kind: 'open', attempt, status: response.status, last_event_id: headers.get('Last-Event-ID') });
      if (!response.ok) {
        const body = await response.text().catch(() => '');
        emit({ kind: 'refused', attempt, status: response.status, body });
        throw new Error(`SSE failed: ${response.status} ${response.statusText}`);
      }
      if (!response.body) throw new Error('No body in SSE response');
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          buffer = (buffer + value).replace(/\r\n/g, '\n').replace(/\r/g, '\n');
          const blocks = buffer.split('\n\n');
          buffer = blocks.pop() ?? '';
          for (const block of blocks) {
            const ev = parseBlock(block, state);
            if (!ev) continue;
            emit({ kind: 'event', attempt, event: ev.event, id: state.lastEventId ?? null, retry: state.retry, data: ev.data });
            if (opts.untilTerminal && ev.data && TERMINAL.has(ev.data.event_type)) {
              terminal = true;
              break;
            }
          }
          if (terminal) break;
        }
      } finally {
        if (terminal) await reader.cancel().catch(() => {});
        reader.releaseLock();
      }
      reason = terminal ? 'terminal' : 'clean';
      break; // a clean end (or the view stopped reading): done
    } catch (error) {
      if (controller.signal.aborted) {
        reason = 'timeout';
        break;
      }
      const giving_up = attempt >= opts.maxAttempts;
      const backoff_ms = Math.min(state.retry * 2 ** (attempt - 1), 30000);
      emit({ kind: 'error', attempt, ...describe(error), backoff_ms, giving_up });
      if (giving_up) {
        reason = 'gave_up';
        break;
      }
      await sleep(backoff_ms);
    }
  }
  clearTimeout(timer);
  const ui_error = opts.untilTerminal && !terminal && reason !== 'timeout' ? 'Connection to server lost.' : null;
  emit({ kind: 'end', reason, attempts: attempt, ui_error });
  return reason === 'timeout' ? 2 : 0;
}

run(parseArgs(process.argv.slice(2))).then(
  (code) => process.exit(code),
  (error) => {
    emit({ kind: 'end', reason: 'crash', ...describe(error) });
    process.exit(3);
  },
);
