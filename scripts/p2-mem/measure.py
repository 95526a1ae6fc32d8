#!/usr/bin/env python3
"""Per-stream memory split of a p2 component under `wasmtime serve` or `spin up`
(docs/PERFORMANCE.md, "Where a p2 stream's memory goes"; scripts/p2-mem/run.sh
runs the whole set).

    measure.py HOST KIND WASM N [--warm W] [--out FILE.json] [--env K=V ...]
               [--late S] [--churn S] [--null-tcp] [--spin-env]

HOST: wasmtime | spin.  KIND: null (any GET holds; waits for `retry:`) |
gateway (execution streams, one user and record each; waits for the
status event's `data:`).  Starts redis-server (gateway only) and the host
on free ports, opens W warm-up streams, snapshots the host process tree's
smaps, opens N more, waits until every one has its first bytes, waits
3 s, snapshots again, prints the growth per stream split by mapping kind
and writes the raw numbers as JSON (with the smaps of both snapshots).
--late S: a third snapshot S seconds later (Spin's transient blocking-pool
threads are gone by then). --churn S: then close the N streams (run the
gateway with a 1 s heartbeat so it notices), wait S, snapshot (what the
closed streams' slots keep), open N again, snapshot. --null-tcp: the null
component also holds a TCP connection to the redis-server. --spin-env:
under Spin, a portable build configured with `spin up -e`.
Needs redis-server and redis-cli; wasmtime from $WASMTIME or the cache of
scripts/tools.sh; Spin from $SPIN or ../shared/spin/install.sh.
"""
import argparse, asyncio, base64, hashlib, hmac, json, os, socket, subprocess, sys, time

WASMTIME = os.environ.get('WASMTIME', os.path.expanduser('~/.cache/sse-gateway/wasmtime-48.0.8/bin/wasmtime'))
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
SECRET = 'mem-split-secret-0123456789abcdef'


def free_port():
    s = socket.socket(); s.bind(('127.0.0.1', 0)); p = s.getsockname()[1]; s.close(); return p


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b'=').decode()


def jwt(sub, role='user'):
    now = int(time.time())
    h = b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())
    c = b64(json.dumps({'sub': sub, 'role': role, 'iat': now, 'exp': now + 36000}).encode())
    s = b64(hmac.new(SECRET.encode(), f'{h}.{c}'.encode(), hashlib.sha256).digest())
    return f'{h}.{c}.{s}'


def tree(pid):
    out = [pid]
    try:
        for t in os.listdir(f'/proc/{pid}/task'):
            with open(f'/proc/{pid}/task/{t}/children') as f:
                for c in f.read().split():
                    out += tree(int(c))
    except OSError:
        pass
    return sorted(set(out))


def smaps(pid):
    vmas = []
    cur = None
    with open(f'/proc/{pid}/smaps') as f:
        for line in f:
            parts = line.split()
            if '-' in parts[0] and len(parts) >= 5 and not parts[0].endswith(':'):
                a, b = parts[0].split('-')
                cur = {'start': int(a, 16), 'end': int(b, 16), 'perms': parts[1],
                       'name': parts[5] if len(parts) > 5 else '[anon]'}
                vmas.append(cur)
            elif parts[0].endswith(':') and len(parts) >= 2 and parts[1].isdigit():
                cur[parts[0][:-1]] = int(parts[1])
    return vmas


def status(pid):
    d = {}
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            k, _, v = line.partition(':')
            if k in ('VmRSS', 'RssAnon', 'RssFile', 'RssShmem', 'Threads'):
                d[k] = int(v.split()[0])
    return d


def classify(vmas):
    """Labels each vma: the wasm image, linear memory below it (shadow
    stack), linear memory above it (heap), [heap], and the rest by shape."""
    images = {v['start']: v for v in vmas if 'wasm-memory-image' in v['name']}
    image_ends = {v['end']: v for v in images.values()}
    for v in vmas:
        n = v['name']
        if 'wasm-memory-image' in n:
            v['kind'] = 'image (memfd, CoW)'
        elif n == '[anon]' and v['end'] in images:
            v['kind'] = 'linear memory below the image (shadow stack)'
        elif n == '[anon]' and v['start'] in image_ends and v['perms'].startswith('rw'):
            v['kind'] = 'linear memory above the image (guest heap)'
        elif n == '[heap]':
            v['kind'] = 'host malloc: [heap] (brk)'
        elif n == '[anon]':
            size = (v['end'] - v['start']) // 1024
            v['kind'] = f'[anon] {v["perms"]} {size} KiB'
        else:
            v['kind'] = 'file: ' + os.path.basename(n)
    return vmas


def snapshot(pid):
    snap = {'procs': {}}
    for p in tree(pid):
        try:
            vm = classify(smaps(p))
            st = status(p)
            with open(f'/proc/{p}/cmdline') as f:
                cmd = f.read().replace('\0', ' ')[:80]
        except OSError:
            continue
        snap['procs'][p] = {'vmas': vm, 'status': st, 'cmd': cmd}
    return snap


def growth(a, b, n):
    """Growth per stream by kind: Rss, Pss, private (clean+dirty), count of
    vmas of that kind that grew. Anon vmas match by start address."""
    kinds = {}
    for p, pb in b['procs'].items():
        pa = a['procs'].get(p, {'vmas': []})
        before = {(v['start'], v['end']): v for v in pa['vmas']}
        by_start = {v['start']: v for v in pa['vmas']}
        for v in pb['vmas']:
            w = before.get((v['start'], v['end']))
            if w is None:
                w = by_start.get(v['start']) if not v['kind'].startswith('linear') and 'image' not in v['kind'] else None
            d = {}
            for f in ('Rss', 'Pss', 'Private_Clean', 'Private_Dirty', 'Shared_Clean', 'Shared_Dirty', 'Anonymous', 'Size'):
                d[f] = v.get(f, 0) - (w.get(f, 0) if w else 0)
            k = v['kind']
            # glibc arenas and pools: one vma each; name the big ones by size
            e = kinds.setdefault(k, {'Rss': 0, 'Pss': 0, 'Private': 0, 'Anonymous': 0, 'Size': 0, 'vmas_grown': 0})
            if d['Rss'] == 0 and d['Size'] == 0:
                continue
            e['Rss'] += d['Rss']; e['Pss'] += d['Pss']
            e['Private'] += d['Private_Clean'] + d['Private_Dirty']
            e['Anonymous'] += d['Anonymous']; e['Size'] += d['Size']
            e['vmas_grown'] += 1
    out = {k: {f: (x / n if f != 'vmas_grown' else x) for f, x in e.items()} for k, e in kinds.items() if e['Rss'] or e['Size']}
    tot = {}
    for f in ('VmRSS', 'RssAnon', 'RssFile', 'RssShmem', 'Threads'):
        tot[f] = (sum(p['status'].get(f, 0) for p in b['procs'].values()) -
                  sum(p['status'].get(f, 0) for p in a['procs'].values())) / n
    for f in ('Pss', 'Private'):
        def s(x):
            if f == 'Private':
                return sum(v.get('Private_Clean', 0) + v.get('Private_Dirty', 0) for p in x['procs'].values() for v in p['vmas'])
            return sum(v.get(f, 0) for p in x['procs'].values() for v in p['vmas'])
        tot[f] = (s(b) - s(a)) / n
    return out, tot


async def open_streams(addr, reqs, marker, opened, writers):
    async def one(req):
        try:
            r, w = await asyncio.open_connection(*addr)
        except OSError as e:
            print('connect failed', e, file=sys.stderr); return
        writers.append(w)
        w.write(req); await w.drain()
        buf = b''
        seen = False
        while True:
            try:
                c = await r.read(4096)
            except OSError:
                return
            if not c:
                if seen:
                    opened.append(-1)
                return
            if seen:
                continue  # heartbeats: keep reading without keeping bytes
            buf += c
            if marker in buf:
                opened.append(1)
                seen, buf = True, b''
    tasks = []
    for i, req in enumerate(reqs):
        tasks.append(asyncio.create_task(one(req)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)
    return tasks


async def wait_for(cond, secs):
    t = time.time()
    while time.time() - t < secs:
        if cond():
            return True
        await asyncio.sleep(0.1)
    return False


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('host'); ap.add_argument('kind'); ap.add_argument('wasm'); ap.add_argument('n', type=int)
    ap.add_argument('--warm', type=int, default=20)
    ap.add_argument('--out')
    ap.add_argument('--env', action='append', default=[])
    ap.add_argument('--host-arg', action='append', default=[])
    ap.add_argument('--null-tcp', action='store_true', help='null: hold a TCP connection to redis')
    ap.add_argument('--spin-env', action='store_true', help='spin gateway: portable build, config by -e')
    ap.add_argument('--label', default='')
    ap.add_argument('--late', type=float, default=0, help='also snapshot this many seconds after the first one')
    ap.add_argument('--churn', type=float, default=0, help='then close the N streams, wait this long, snapshot, open N again, snapshot')
    ap.add_argument('--hold', type=float, default=0, help='seconds to hold after the snapshot')
    ap.add_argument('--manifest-template', default=os.path.join(REPO, 'spin.toml'))
    o = ap.parse_args()
    work = f'/tmp/mem-split-{os.getpid()}'
    os.makedirs(work, exist_ok=True)
    procs = []
    total = o.warm + o.n
    cap = total + 200
    rport = free_port()
    redis = subprocess.Popen(['redis-server', '--port', str(rport), '--save', '', '--appendonly', 'no',
                              '--maxclients', '10000'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(redis)
    time.sleep(0.5)
    if o.kind == 'gateway':
        cmds = ''.join(f'HSET exec:m{i} user_id mu{i} status running updated_at 2025-01-01T00:00:00Z\n' for i in range(total))
        subprocess.run(['redis-cli', '-p', str(rport)], input=cmds.encode(), stdout=subprocess.DEVNULL, check=True)
    port = free_port()
    env = dict(os.environ)
    extra = dict(kv.split('=', 1) for kv in o.env)
    if o.host == 'wasmtime':
        cmd = [WASMTIME, 'serve', '-S', 'cli', '-S', 'inherit-network',
               '-O', f'pooling-total-component-instances={cap}', '-O', f'pooling-total-core-instances={cap*4}',
               '-O', f'pooling-total-memories={cap}', '-O', f'pooling-total-tables={cap*2}',
               '-O', f'pooling-total-stacks={cap}', '--max-concurrent-connections', str(cap),
               '--max-concurrent-requests', str(cap), '--addr', f'127.0.0.1:{port}'] + o.host_arg
        if o.kind == 'gateway':
            cmd += ['--env', f'REDIS_URL=redis://127.0.0.1:{rport}', '--env', f'JWT_SECRET={SECRET}']
        for k, v in extra.items():
            cmd += ['--env', f'{k}={v}']
        if o.null_tcp:
            cmd += ['--env', f'NULL_TCP_PORT={rport}']
        cmd.append(o.wasm)
    else:
        spin = os.environ.get('SPIN') or subprocess.run(
            [os.path.join(REPO, '..', 'shared', 'spin', 'install.sh')],
            capture_output=True, text=True).stdout.strip().splitlines()[-1]
        man = f'{work}/spin.toml'
        if o.kind == 'gateway':
            text = open(o.manifest_template).read()
            import re
            text = re.sub(r'(?m)^source = .*$', f'source = "{o.wasm}"', text)
            open(man, 'w').write(text)
            env['SPIN_VARIABLE_JWT_SECRET'] = SECRET
            env['SPIN_VARIABLE_REDIS_HOST'] = '127.0.0.1'
            env['SPIN_VARIABLE_REDIS_PORT'] = str(rport)
            for k, v in extra.items():
                env['SPIN_VARIABLE_' + k.upper()] = v
        else:
            open(man, 'w').write(f'''spin_manifest_version = 2
[application]
name = "null"
[[trigger.http]]
route = "/..."
component = "null"
[component.null]
source = "{o.wasm}"
allowed_outbound_hosts = ["tcp://127.0.0.1:{rport}"]
''')
        env['SPIN_MAX_INSTANCE_COUNT'] = str(cap)
        cmd = [spin, 'up', '-f', man, '--listen', f'127.0.0.1:{port}', '--state-dir', f'{work}/state'] + o.host_arg
        if o.null_tcp:
            cmd += ['-e', f'NULL_TCP_PORT={rport}']
        if o.spin_env:
            cmd += ['-e', f'REDIS_URL=redis://127.0.0.1:{rport}', '-e', f'JWT_SECRET={SECRET}']
            for k, v in extra.items():
                cmd += ['-e', f'{k.upper()}={v}']
    hostlog = open(f'{work}/host.log', 'w')
    host = subprocess.Popen(cmd, env=env, stdout=hostlog, stderr=subprocess.STDOUT, cwd=work)
    procs.append(host)
    try:
        # ready: the port accepts (the null component answers nothing else)
        for _ in range(600):
            try:
                socket.create_connection(('127.0.0.1', port), timeout=1).close(); break
            except OSError:
                time.sleep(0.2)
        time.sleep(1.0)
        def reqs(lo, hi):
            out = []
            for i in range(lo, hi):
                if o.kind == 'gateway':
                    out.append(f'GET /api/v1/events/executions/m{i} HTTP/1.1\r\nHost: x\r\nCookie: access_token={jwt(f"mu{i}")}\r\n\r\n'.encode())
                else:
                    out.append(f'GET /null/{i} HTTP/1.1\r\nHost: x\r\n\r\n'.encode())
            return out
        marker = b'data:' if o.kind == 'gateway' else b'retry:'
        opened, writers = [], []
        addr = ('127.0.0.1', port)
        t1 = await open_streams(addr, reqs(0, o.warm), marker, opened, writers)
        ok = await wait_for(lambda: sum(opened) >= o.warm, 120)
        await asyncio.sleep(2)
        a = snapshot(host.pid)
        t2 = await open_streams(addr, reqs(o.warm, total), marker, opened, writers)
        ok = await wait_for(lambda: sum(opened) >= total, 300)
        await asyncio.sleep(3)
        b = snapshot(host.pid)
        held = sum(opened)
        kinds, tot = growth(a, b, o.n)
        print(f'== {o.host} {o.kind} {os.path.basename(o.wasm)} N={o.n} held={held}/{total}')
        print('   per stream (KiB): ' + ', '.join(f'{k} {v:.1f}' for k, v in tot.items()))
        for k, e in sorted(kinds.items(), key=lambda kv: -kv[1]['Rss']):
            if abs(e['Rss']) < 0.05 and abs(e['Private']) < 0.05:
                continue
            print(f'   {k:55s} Rss {e["Rss"]:7.1f} Pss {e["Pss"]:7.1f} private {e["Private"]:7.1f} anon {e["Anonymous"]:7.1f} (vmas grown {e["vmas_grown"]})')
        if o.out:
            json.dump({'label': o.label, 'host': o.host, 'kind': o.kind, 'wasm': o.wasm, 'n': o.n, 'warm': o.warm, 'held': held,
                       'cmd': cmd, 'per_stream_totals': tot, 'per_stream_kinds': kinds,
                       'procs': {p: {'cmd': v['cmd']} for p, v in b['procs'].items()}}, open(o.out, 'w'), indent=1)
            # raw smaps of the after snapshot for later reading
            with open(o.out + '.smaps-after.json', 'w') as f:
                json.dump({str(p): v['vmas'] for p, v in b['procs'].items()}, f)
            with open(o.out + '.smaps-before.json', 'w') as f:
                json.dump({str(p): v['vmas'] for p, v in a['procs'].items()}, f)
        if o.late:
            await asyncio.sleep(o.late)
            b2 = snapshot(host.pid)
            kinds2, tot2 = growth(a, b2, o.n)
            print(f'   {o.late:.0f} s later, per stream (KiB): ' + ', '.join(f'{k} {v:.2f}' for k, v in tot2.items()))
            for k, e in sorted(kinds2.items(), key=lambda kv: -kv[1]['Rss'])[:8]:
                print(f'     {k:55s} Rss {e["Rss"]:7.1f} private {e["Private"]:7.1f} (vmas grown {e["vmas_grown"]})')
            if o.out:
                d = json.load(open(o.out)); d['late'] = {'seconds': o.late, 'per_stream_totals': tot2, 'per_stream_kinds': kinds2}
                json.dump(d, open(o.out, 'w'), indent=1)
                with open(o.out + '.smaps-late.json', 'w') as f:
                    json.dump({str(p): v['vmas'] for p, v in b2['procs'].items()}, f)
        if o.churn:
            for w in writers[o.warm:]:
                w.close()
            await asyncio.sleep(o.churn)
            c = snapshot(host.pid)
            _, totc = growth(a, c, o.n)
            print('   after close, retained per closed stream (KiB): ' + ', '.join(f'{k} {v:.1f}' for k, v in totc.items()))
            kc, _ = growth(a, c, o.n)
            for k, e in sorted(kc.items(), key=lambda kv: -kv[1]['Rss'])[:8]:
                print(f'     {k:55s} Rss {e["Rss"]:7.1f} private {e["Private"]:7.1f} (vmas grown {e["vmas_grown"]})')
            base = sum(x for x in opened if x > 0)
            opened.clear(); opened.append(0)
            t3 = await open_streams(addr, reqs(o.warm, total), marker, opened, writers)
            await wait_for(lambda: sum(x for x in opened if x > 0) >= o.n, 300)
            await asyncio.sleep(3)
            dsnap = snapshot(host.pid)
            _, totd = growth(a, dsnap, o.n)
            kd, _ = growth(c, dsnap, o.n)
            print(f'   reopened {sum(x for x in opened if x > 0)}: total over the first snapshot per stream (KiB): ' + ', '.join(f'{k} {v:.1f}' for k, v in totd.items()))
            for k, e in sorted(kd.items(), key=lambda kv: -kv[1]['Rss'])[:8]:
                print(f'     reopen growth {k:45s} Rss {e["Rss"]:7.1f} private {e["Private"]:7.1f} (vmas grown {e["vmas_grown"]})')
            if o.out:
                d = json.load(open(o.out)); d['churn'] = {'retained_after_close': totc, 'after_reopen': totd,
                    'retained_kinds': kc, 'reopen_growth_kinds': kd}
                json.dump(d, open(o.out, 'w'), indent=1)
        if o.hold:
            await asyncio.sleep(o.hold)
        for w in writers:
            w.close()
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

if __name__ == "__main__":
    asyncio.run(main())
