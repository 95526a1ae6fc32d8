#!/usr/bin/env python3
"""Drives the deepest guest-stack paths against one portable build under
wasmtime serve and says, per case, whether the answer was right or the
instance trapped: JSON nested to serde_json's limit (128) in a live
message, a stored result (parsed to a Value, serialized, dropped), a
result_stored filled from the record, a token claim, a published body, a
notification. (RS256/ES256/EdDSA tokens and TLS to Redis: tests/keys.rs and
tests/redis_tls.rs, which passed with a 32 KiB stack.)

    depth.py WASM [DEPTH]
"""
import json, os, socket, subprocess, sys, time, urllib.request
sys.path.insert(0, os.path.dirname(__file__))
from measure import free_port, jwt, SECRET, WASMTIME, b64
import hmac, hashlib

wasm = sys.argv[1]
depth = int(sys.argv[2]) if len(sys.argv) > 2 else 126
deep = '[' * depth + '1' + ']' * depth
rport, port = free_port(), free_port()
work = f'/tmp/depth-{os.getpid()}'; os.makedirs(work, exist_ok=True)
redis = subprocess.Popen(['redis-server', '--port', str(rport), '--save', '', '--appendonly', 'no'], stdout=subprocess.DEVNULL)
log = open(f'{work}/host.log', 'w')
host = subprocess.Popen([WASMTIME, 'serve', '-S', 'cli', '-S', 'inherit-network', '--addr', f'127.0.0.1:{port}',
                         '--env', f'REDIS_URL=redis://127.0.0.1:{rport}', '--env', f'JWT_SECRET={SECRET}', wasm],
                        stdout=log, stderr=subprocess.STDOUT)

def rc(*args):
    return subprocess.run(['redis-cli', '-p', str(rport), *args], capture_output=True, text=True).stdout

def jwt_claims(claims):
    h = b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())
    c = b64(json.dumps(claims, separators=(',', ':')).encode() if not isinstance(claims, str) else claims.encode())
    s = b64(hmac.new(SECRET.encode(), f'{h}.{c}'.encode(), hashlib.sha256).digest())
    return f'{h}.{c}.{s}'

def stream(path, token, secs, on_open=None):
    s = socket.create_connection(('127.0.0.1', port)); s.settimeout(0.3)
    s.sendall(f'GET {path} HTTP/1.1\r\nHost: x\r\nCookie: access_token={token}\r\n\r\n'.encode())
    buf = b''; t = time.time(); fired = False
    while time.time() - t < secs:
        try:
            c = s.recv(65536)
            if not c: break
            buf += c
        except socket.timeout:
            pass
        if on_open and not fired and (b'data:' in buf or b'retry:' in buf):
            fired = True; time.sleep(0.3); on_open()
    s.close()
    return buf

def post(path, token, body):
    req = urllib.request.Request(f'http://127.0.0.1:{port}{path}', data=body.encode(), method='POST',
                                 headers={'Authorization': f'Bearer {token}', 'content-type': 'application/json'})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception as e:
        return 'error', repr(e).encode()

for _ in range(100):
    try:
        socket.create_connection(('127.0.0.1', port), timeout=1).close(); break
    except OSError:
        time.sleep(0.2)
time.sleep(0.5)
res = {}
now = int(time.time())
# A: live message nested `depth` deep
rc('HSET', 'exec:a', 'user_id', 'ua', 'status', 'running', 'updated_at', '2025-01-01T00:00:00Z')
ev = '{"event_type":"pod_running","execution_id":"a","x":' + deep + '}'
b = stream('/api/v1/events/executions/a', jwt('ua'), 3, lambda: rc('PUBLISH', 'sse:exec:a', ev))
res['A live message'] = (deep.encode() in b, len(b))
# B: finished record with a deep result
rc('HSET', 'exec:b', 'user_id', 'ub', 'status', 'completed', 'updated_at', '2025-01-01T00:00:00Z', 'result', '{"r":' + deep + '}')
b = stream('/api/v1/events/executions/b', jwt('ub'), 3)
res['B stored result'] = (b'result_stored' in b and deep.encode() in b and b.endswith(b'0\r\n\r\n'), len(b))
# C: result_stored with null result, filled from a deep record result
rc('HSET', 'exec:c', 'user_id', 'uc', 'status', 'running', 'updated_at', '2025-01-01T00:00:00Z', 'result', '{"r":' + deep + '}')
b = stream('/api/v1/events/executions/c', jwt('uc'), 3,
           lambda: rc('PUBLISH', 'sse:exec:c', '{"event_type":"result_stored","execution_id":"c","result":null}'))
res['C result filled'] = (deep.encode() in b, len(b))
# D: token with a deep extra claim
tok = jwt_claims('{"sub":"ud","role":"user","iat":%d,"exp":%d,"x":%s}' % (now, now + 3600, deep))
rc('HSET', 'exec:d', 'user_id', 'ud', 'status', 'running', 'updated_at', '2025-01-01T00:00:00Z')
b = stream('/api/v1/events/executions/d', tok, 2)
res['D token claim'] = (b.split(b'\r\n')[0], len(b))
# E: published body nested deep
st, body = post('/api/v1/events/executions/e', jwt('svc', 'service'), '{"event_type":"pod_running","execution_id":"e","x":' + deep + '}')
res['E publish'] = (st, body[:80])
# F: notification nested deep
b = stream('/api/v1/events/notifications/stream', jwt('uf'), 3, lambda: rc('PUBLISH', 'sse:notif:uf', '{"x":' + deep + '}'))
res['F notification'] = (deep.encode() in b, len(b))
# G: over the limit (depth 200): refused, not a trap
deeper = '[' * 200 + '1' + ']' * 200
rc('HSET', 'exec:g', 'user_id', 'ug', 'status', 'completed', 'updated_at', '2025-01-01T00:00:00Z', 'result', '{"r":' + deeper + '}')
b = stream('/api/v1/events/executions/g', jwt('ug'), 3)
res['G stored result 200 deep'] = (b'result_stored' in b and b.endswith(b'0\r\n\r\n'), len(b))
host.terminate(); redis.terminate(); host.wait(); redis.wait()
log.close()
traps = [l for l in open(f'{work}/host.log') if 'trap' in l.lower() or 'error' in l.lower() and 'wasm' in l.lower()]
print(f'== {wasm} depth {depth}')
for k, v in res.items():
    print(f'   {k}: {v}')
print(f'   trap lines in host log: {len(traps)}')
for l in traps[:5]:
    print('     ' + l.strip()[:200])
