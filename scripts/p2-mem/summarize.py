#!/usr/bin/env python3
"""Groups measure.py's per-stream growth into the split's categories."""
import json, sys

def cats(d):
    n = d['n']
    out = {}
    def add(c, rss, priv):
        e = out.setdefault(c, [0.0, 0.0]); e[0] += rss; e[1] += priv
    for k, e in d['per_stream_kinds'].items():
        rss, priv = e['Rss'], e['Private']
        if k.startswith('image'):
            add('linear memory: data image, written pages (CoW, private)', priv, priv)
            add('linear memory: data image, mapped read-only pages (shared memfd)', rss - priv, 0)
        elif k.startswith('linear memory below'):
            add('linear memory: shadow stack (below the image)', rss, priv)
        elif k.startswith('linear memory above'):
            add('linear memory: guest heap (above the image)', rss, priv)
        elif k.startswith('[anon] rw-p') and e['vmas_grown'] >= 0.9 * n:
            add(f'host: fiber stacks ({k[12:]} each)', rss, priv)
        elif k.startswith('[anon] rw-p') and int(k.split()[2]) > 100000:
            add('host: table pool (one mapping)', rss, priv)
        elif k.startswith('[anon]') or k.startswith('host malloc'):
            add('host: malloc heap ([heap] + arenas)', rss, priv)
        else:
            add('other: ' + k, rss, priv)
    return out

rows = {}
files = sys.argv[1:]
data = [json.load(open(f)) for f in files]
import os
if os.environ.get('LATE'):
    for d in data:
        d['per_stream_kinds'] = d['late']['per_stream_kinds']; d['per_stream_totals'] = d['late']['per_stream_totals']
allc = []
for d in data:
    c = cats(d)
    rows[d['host'] + ' ' + d['kind'] + ' ' + d.get('label', '')] = c
    for k in c:
        if k not in allc:
            allc.append(k)
cols = list(rows)
print('| KiB per stream (Rss / private) | ' + ' | '.join(f'{c} ({f})' for c, f in zip(cols, files)) + ' |')
print('|---|' + '---:|' * len(cols))
for k in sorted(allc):
    print(f'| {k} | ' + ' | '.join(f'{rows[c].get(k, [0,0])[0]:.1f} / {rows[c].get(k, [0,0])[1]:.1f}' for c in cols) + ' |')
for f in ('VmRSS', 'RssShmem', 'RssAnon', 'Threads'):
    print(f'| total {f} | ' + ' | '.join(f'{d["per_stream_totals"][f]:.1f}' for d in data) + ' |')
print('| held / opened | ' + ' | '.join(f'{d["held"]}/{d["n"]+d["warm"]}' for d in data) + ' |')
