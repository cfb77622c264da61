#!/usr/bin/env python3
"""The goal figures of loop.sh's output by the host's bandwidth: each T = 1 result line's paired %
(pages-decode: its paired x bound) goes to the bin of its probe passes' median GB/s, and its
"own pages" % (where printed) to the bin of that read's GB/s. Prints a Markdown table, each cell
the median (min-max, results). The small GEMV shapes are left out.
Usage: parse.py [FILE ...]   (default: 1-loop-gemv.txt 1-loop-pages.txt next to this script)"""
import collections, os, re, sys
here = os.path.dirname(os.path.abspath(__file__))
files = sys.argv[1:] or [os.path.join(here, f) for f in ('1-loop-gemv.txt', '1-loop-pages.txt')]
rows = []
pat = re.compile(r'^(\S+)\s+(\S+)\s+(\[[\d,]+\]|L\d+)\s+T=(\d+).*?paired: ([\d.]+)% bw, ([\d.]+)x \(probe passes ([\d.]+) GB/s\)(?:.*?same pages: ([\d.]+)% \(reads of them ([\d.]+) GB/s\))?')
for f in files:
    for line in open(f):
        m = pat.match(line)
        if not m: continue
        kern, fmt, shape, T, pct, x, probe, same, same_bw = m.groups()
        if kern not in ('gemv', 'gemv-logits', 'pages-layers', 'pages-decode'): continue
        if T != '1': continue
        rows.append((kern, fmt, shape, float(pct), float(x), float(probe),
                     float(same) if same else None, float(same_bw) if same_bw else None, f))
bins = [(0, 45), (45, 55), (55, 65), (65, 75), (75, 200)]
def b(v):
    for lo, hi in bins:
        if lo <= v < hi: return f'{lo}-{hi}' if hi < 200 else f'>={lo}'
out = collections.defaultdict(list)
for r in rows:
    kern, fmt, shape = r[0], r[1], r[2]
    if shape.startswith('[1024') or shape.startswith('[4096'):
        continue
    key = ('GEMV ' + shape if kern.startswith('gemv') else kern, fmt)
    out[(key, b(r[5]), 'paired')].append(r[3] if kern != 'pages-decode' else r[4])
    if r[6] is not None:
        out[(key, b(r[7]), 'same')].append(r[6])
keys = sorted({k[0] for k in out})
label = lambda lo, hi: f'{lo}-{hi}' if hi < 200 else f'>={lo}'
used = [(lo, hi) for lo, hi in bins if any(k[1] == label(lo, hi) for k in out)]
print('| kernel | weights | measure | ' + ' | '.join(f'{lo}-{hi} GB/s' if hi < 200 else f'>= {lo} GB/s' for lo, hi in used) + ' |')
print('|---|---|---|' + '---|' * len(used))
for key in keys:
    for meas in ('paired', 'same'):
        cells = []
        for lo, hi in used:
            v = sorted(out.get((key, label(lo, hi), meas), []))
            if not v:
                cells.append('')
                continue
            fmtv = (lambda a: f'{a:.2f}') if key[0] == 'pages-decode' else (lambda a: f'{a:.1f}')
            med = v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2
            cells.append(f'**{fmtv(med)}** ({fmtv(v[0])}–{fmtv(v[-1])}, {len(v)})' if len(v) > 1 else f'{fmtv(v[0])} (1)')
        if any(cells):
            what = ('x bound, paired' if key[0] == 'pages-decode'
                    else '% of probe passes' if meas == 'paired' else '% of own pages read')
            print(f'| {key[0]} | {key[1]} | {what} | ' + ' | '.join(cells) + ' |')
