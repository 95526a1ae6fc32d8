// Streams from a real gateway through the client @hey-api/openapi-ts
// generated from ../../openapi.json (src/client/, made by `npm run build`).
// It uses the generated functions the way Integr8sCode's frontend does:
// `for await` over an execution stream reading `status`, `event_type` and
// `result` (so a change of the document that would break that code fails
// to compile here), `onSseEvent` for the notification stream.
//
//   node dist/stream.js BASE_URL EXECUTION_ID USER_ID USER_TOKEN SERVICE_TOKEN
//
// The execution record `exec:EXECUTION_ID` must exist, owned by USER_ID,
// not finished, with a stored `result`. Prints one JSON object per line
// (`kind`: health, openapi, publish_refused, event, published, view,
// sse_error, notification, end); tests/openapi_client.rs asserts them.

import {
  executionEventsApiV1EventsExecutionsExecutionIdGet,
  livenessApiV1EventsHealthGet,
  notificationStreamApiV1EventsNotificationsStreamGet,
  openapiApiV1EventsOpenapiJsonGet,
  publishExecutionEventApiV1EventsExecutionsExecutionIdPost,
  publishNotificationApiV1EventsNotificationsUserIdPost,
} from './client/index.js';
import type { ExecutionStreamData, Notification, Published } from './client/index.js';
import { client } from './client/client.gen.js';

// Node's own globals, without @types/node.
declare const process: {
  argv: string[];
  exit(code?: number): never;
  stdout: { write(text: string): boolean };
};

const [baseUrl, executionId, userId, userToken, serviceToken] = process.argv.slice(2);
if (!serviceToken) {
  throw new Error('usage: stream.js BASE_URL EXECUTION_ID USER_ID USER_TOKEN SERVICE_TOKEN');
}

// The execution view's phases, as the Python service's producers publish them.
const RUN = ['execution_requested', 'execution_queued', 'pod_created', 'pod_running', 'execution_completed'];

function emit(line: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(line) + '\n');
}

const timeout = setTimeout(() => {
  emit({ kind: 'end', reason: 'timeout' });
  process.exit(1);
}, 60_000);

client.setConfig({ baseUrl });

/** Every event the SSE call reports, data or not (a `retry:` block has none). */
function reporter(call: string) {
  return (e: { data: unknown; event?: string; id?: string; retry?: number }) => {
    if (e.data !== undefined) {
      emit({ kind: 'event', call, event: e.event ?? null, last_event_id: e.id ?? null, data: e.data });
    }
  };
}

/** Publishes the run and its `result_stored` (with `result: null`, as the
 * Python service's producers do: the gateway fills it from the record). */
async function publishRun(): Promise<Published[]> {
  const published: Published[] = [];
  for (const eventType of [...RUN, 'result_stored']) {
    const { data, error, response } = await publishExecutionEventApiV1EventsExecutionsExecutionIdPost({
      auth: serviceToken,
      path: { execution_id: executionId },
      body: { event_type: eventType, execution_id: executionId, event_id: `${eventType}-1`, status: null, result: null },
    });
    emit({ kind: 'published', event_type: eventType, status: response.status, data, error });
    if (data) published.push(data);
  }
  return published;
}

async function main(): Promise<void> {
  const health = await livenessApiV1EventsHealthGet();
  emit({ kind: 'health', status: health.response.status, data: health.data });

  const openapi = await openapiApiV1EventsOpenapiJsonGet();
  emit({ kind: 'openapi', status: openapi.response.status, openapi: openapi.data?.['openapi'] ?? null });

  // A user token may not publish: the typed error body.
  const refused = await publishExecutionEventApiV1EventsExecutionsExecutionIdPost({
    auth: userToken,
    path: { execution_id: executionId },
    body: { event_type: 'pod_running' },
  });
  emit({ kind: 'publish_refused', status: refused.response.status, type: refused.error?.type ?? null });

  // The execution view: as Integr8sCode's `execution.svelte.ts` reads it.
  let publishing: Promise<Published[]> | null = null;
  const { stream } = await executionEventsApiV1EventsExecutionsExecutionIdGet({
    auth: userToken,
    path: { execution_id: executionId },
    sseMaxRetryAttempts: 3,
    onSseEvent: reporter('view'),
  });
  let phase: string | null = null;
  let result: unknown = null;
  let terminal = false;
  for await (const ev of stream) {
    const event: ExecutionStreamData = ev;
    if (event.status) phase = event.status;
    if (event.event_type === 'status' && publishing === null) publishing = publishRun();
    if (event.event_type === 'result_stored') {
      result = event.result;
      terminal = true;
      break;
    }
  }
  const published = publishing ? await publishing : [];
  emit({ kind: 'view', phase, terminal, result });

  // A reconnect from the second event on: the rest of the history, once,
  // then the clean end after the terminal event (the stream just ends).
  const resumeFrom = published[1]?.id;
  if (resumeFrom) {
    const resumed = await executionEventsApiV1EventsExecutionsExecutionIdGet({
      auth: userToken,
      path: { execution_id: executionId },
      headers: { 'Last-Event-ID': resumeFrom },
      sseMaxRetryAttempts: 1,
      onSseEvent: reporter('resume'),
      onSseError: (error) => emit({ kind: 'sse_error', call: 'resume', error: String(error) }),
    });
    for await (const _ of resumed.stream) {
      // reported by onSseEvent
    }
  }

  // An execution that does not exist: the SSE call's error.
  const missing = await executionEventsApiV1EventsExecutionsExecutionIdGet({
    auth: userToken,
    path: { execution_id: `${executionId}-missing` },
    sseMaxRetryAttempts: 1,
    onSseError: (error) => emit({ kind: 'sse_error', call: 'missing', error: String(error) }),
  });
  for await (const _ of missing.stream) {
    // nothing comes
  }

  // The notification stream, as Integr8sCode's `stream.svelte.ts` reads it:
  // `onSseEvent`, `event: notification` only. Its first bytes (`retry:`)
  // mean it is subscribed: then a notification is published to the user.
  const controller = new AbortController();
  let sent: Promise<unknown> | null = null;
  let received: Notification | null = null;
  const notifications = await notificationStreamApiV1EventsNotificationsStreamGet({
    auth: userToken,
    signal: controller.signal,
    sseMaxRetryAttempts: 1,
    onSseEvent: (event) => {
      if (sent === null) {
        sent = publishNotificationApiV1EventsNotificationsUserIdPost({
          auth: serviceToken,
          path: { user_id: userId },
          body: { subject: 'Execution finished', body: 'Your script ran', tags: ['execution'] },
        }).then(({ data, response }) => emit({ kind: 'published', event_type: 'notification', status: response.status, data }));
      }
      if (event.event !== 'notification') return;
      received = event.data as Notification;
      emit({ kind: 'notification', event: event.event, last_event_id: event.id ?? null, data: received });
    },
  });
  for await (const _ of notifications.stream) {
    if (received !== null) break;
  }
  controller.abort();
  await sent;

  clearTimeout(timeout);
  emit({ kind: 'end', reason: 'done' });
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    emit({ kind: 'end', reason: 'error', error: String(error) });
    process.exit(1);
  },
);
