# SPDX-License-Identifier: GPL-2.0-or-later
"""bt-report's output: the text report and the JSON document."""

import json

from .formatting import MIB, fmt_s, plural


def mib(pages, ps):
    return pages * ps / MIB


def fmt_ranges(ranges, limit=4):
    text = ', '.join(f'{a:x}+{n}' for a, n in ranges[:limit])
    if len(ranges) > limit:
        text += f', ... ({len(ranges)} ranges)'
    return f'at pfn {text}' if text else 'not mapped'


def fmt_bw(bytes_s):
    return f'{bytes_s / MIB:.0f} MiB/s' if bytes_s >= 10 * MIB else f'{bytes_s / MIB:.2f} MiB/s'


def json_doc(log, res):
    """The JSON document: res without its private keys, blocks as lists."""
    doc = {k: v for k, v in res.items() if not k.startswith('_')}
    if doc.get('prediction'):
        # the time series (--plot-dir, --csv-dir) is for the pictures and CSV only
        doc['prediction'] = [{k: v for k, v in p.items() if k != 'series'}
                             for p in doc['prediction']]
    doc['blocks'] = [{'name': b['name'], 'pages': b['pages'],
                      'map': [[a, n] for a, n in b['map']]} for b in log.blocks]
    return json.dumps(doc, indent=1)


def print_report(path, log, res, windows_shown, show_rounds=False):
    ps = log.meta['page_size']
    m = log.meta
    out = []
    w = out.append
    w(f'bitmap-trace log {path} (format v{log.version}, valid)')
    w(f'  QEMU {m["qemu"]}, accel {m["accel"]}, page size {ps}, started {m["start"]}')
    w(f'  asked for {m["iterations"]} iterations of {m["period_ms"]} ms')
    if log.end:
        line = f'  ended: {log.end["status"]} after {log.end["iterations"]} iterations'
        if log.end['error']:
            line += f' (error: {log.end["error"]})'
        w(line)
    else:
        w(f'  no end line: the trace is still running or the log was cut short '
          f'({len(res["windows"])} iterations so far)')
    w(f'  traced RAM: {plural(len(log.blocks), "block")}, {res["ram_pages"]} pages '
      f'({mib(res["ram_pages"], ps):.1f} MiB)')
    for b in log.blocks:
        w(f'    {b["name"]:<24} {plural(b["pages"], "page"):>12}  {fmt_ranges(b["map"])}')
    for reason in log.blocked_reasons:
        w(f'  migration was blocked when the trace started: {reason}')
    for it in log.iters:
        for reason in it.blocked:
            w(f'  migration blocked from iteration {it.n} on: {reason}')
    if log.blocked_reasons or any(it.blocked for it in log.iters):
        w('    (a device that blocks migration may write guest RAM without dirty logging:')
        w('    such writes are in no window)')
    for it in log.iters:
        for name, pages in it.untraced:
            w(f'  not traced: RAM block {name} ({plural(pages, "page")}), added during '
              f'the trace, found at iteration {it.n}: its writes are in no window')
    for b in log.added:
        w(f'  RAM block {b["name"]} ({plural(b["pages"], "page")}, {b["zero"]} zero) added, '
          f'traced from iteration {b["added"]} on'
          + (f', removed at iteration {b["removed"]}' if b['removed'] is not None else '')
          + f'  {fmt_ranges(b["map"])}')
    for b in log.blocks:
        if b.get('removed') is not None:
            w(f'  RAM block {b["name"]} removed at iteration {b["removed"]}')
    if res['baseline_pages'] is not None:
        w(f'  baseline (iteration 0): {res["baseline_pages"]} pages, '
          + ('all of the traced RAM' if res['baseline_pages'] == res['ram_pages'] else
             f'of the {res["ram_pages"]} of the traced RAM (the rest is memory a '
             'virtio-mem device had not plugged)')
          + (f'; {res["baseline_zero_pages"]} of them zero' if 'baseline_zero_pages' in res else ''))
    for warning in res.get('warnings', []):
        w(f'  warning: {warning}')

    wins = res['windows']
    if not wins:
        w('')
        w('no measured window (iterations 1..N): nothing more to report')
        print('\n'.join(out))
        return
    n = len(wins)
    w('')
    w(f'windows 1..{n}: {res["span_ms"] / 1000:.3f} s, {res["window_ms"]:.1f} ms each on average')
    w(f'  dirty pages per window: min {res["dirty_min"]}, mean {res["dirty_mean"]:.1f}, '
      f'max {res["dirty_max"]} ({mib(res["dirty_mean"], ps):.1f} MiB mean)')
    rate = res['dirty_rate_mib_s']
    w(f'  dirty rate: {rate:.1f} MiB/s' if rate is not None else '  dirty rate: - (zero-length trace)')
    w(f'  distinct pages dirtied: {res["distinct_pages"]} ({mib(res["distinct_pages"], ps):.1f} MiB)')
    w(f'  pages dirtied while unmapped: {res["unmapped_total"]}')
    if windows_shown is None:
        shown = []
    else:
        zero = log.has_zero
        w('')
        w('   iter       t-ms  window-ms     dirty  unmapped' + ('      zero' if zero else '')
          + '      MiB    MiB/s   (dirty counts the unmapped pages too)')
        shown = (range(n) if windows_shown == 'all' or n <= 40 else
                 list(range(10)) + [None] + list(range(n - 10, n)))
    for i in shown:
        if i is None:
            w(f'    ... ({n - 20} more; --all-windows shows them)')
            continue
        x = wins[i]
        tot = x['dirty']
        r = mib(tot, ps) / (x['length_ms'] / 1000) if x['length_ms'] > 0 else 0.0
        w(f'  {x["n"]:>5} {x["t_ms"]:>10.3f} {x["length_ms"]:>10.3f} {x["dirty"]:>9} '
          f'{x["unmapped"]:>9}' + (f' {x["zero"]:>9}' if 'zero' in x else '')
          + f' {mib(tot, ps):>8.1f} {r:>8.1f}')

    w('')
    w('working set: distinct pages dirtied in a span of consecutive windows (mean over the trace)')
    spans = sorted({k for k in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000,
                                10000, 20000, 50000, 100000) if k <= n} | {n})
    for k in spans:
        pages = res['working_set'][k - 1]
        w(f'  {plural(k, "window"):>12} ({fmt_s(k * res["window_ms"] / 1000):>8}): {pages:>11.1f} pages '
          f'{mib(pages, ps):>9.1f} MiB')

    preds = res.get('prediction') or []
    if preds:
        print_simulation(w, res, preds, show_rounds)
    print('\n'.join(out))


def print_simulation(w, res, preds, show_rounds):
    s = res['simulation']
    dls = sorted({p['downtime_limit_s'] for p in preds})
    w('')
    w('pre-copy prediction: a replay of QEMU 10.0 pre-copy over the trace '
      '(its rules: bt-report --help)')
    w(f'  downtime limit {", ".join(f"{d * 1000:g} ms" for d in dls)}; accel {s["accel"]}'
      + (f', KVM lazy clear of {2 ** s["clear_bitmap_shift"]}-page chunks' if s['lazy_clear']
         else ', no lazy clear')
      + f'; zero-page-detection {s["zero_page_detection"]}'
      + (f'; avail-switchover-bandwidth {fmt_bw(s["avail_switchover_bandwidth"])}'
         if s['avail_switchover_bandwidth'] else ''))
    w(f'  link (and stop-and-copy) {fmt_bw(s["link_bandwidth"])}; a zero page costs '
      f'{s["zero_page_s"] * 1e6:.2f} us of CPU ({s["zero_page_cost_from"]}); a sync '
      f'{s["sync_s"] * 1000:.2f} ms; device state {s["device_state_bytes"] // 1024} KiB')
    hc = s.get('host_costs')
    if hc:
        w(f'  host costs ' + (f'from the calibration {s["calibration"]}' if s.get('calibration')
                              else 'not calibrated (scripts/validate.py --calibrate, then '
                                   '--calibration FILE, for an accurate prediction)')
          + f': destination per normal page {hc["dest_page_s"] * 1e6:.2f} us '
          f'({hc["dest_first_page_s"] * 1e6:.2f} us the first time), per zero page '
          f'{hc["dest_zero_s"] * 1e6:.2f} us ({hc["dest_zero_first_s"] * 1e6:.2f} us), '
          f'socket buffer {hc["socket_buffer_bytes"] // 1024} KiB; source per page '
          f'{hc["page_cpu_s"] * 1e6:.2f} us, setup '
          + (f'{hc["setup_s"] * 1000:.1f} ms' if hc['setup_s'] is not None else 'the sync time')
          + ', downtime fixed part '
          + (f'{hc["completion_s"] * 1000:.1f} ms' if hc['completion_s'] is not None
             else 'a sync + the device state at the link'))
    if s['zero_pages_unknown']:
        w('  WARNING: a v1 log has no zero-page information: every page is counted as '
          'non-zero, so the prediction is pessimistic (a real migration sends zero '
          'pages for 9 bytes)')
    w(f'  {"max-bandwidth":<26} {"limit":>6} {"rounds":>6} {"syncs":>5} {"total":>9} '
      f'{"downtime":>9} {"sent":>10}  result')
    for p in preds:
        bw = f'{p["bandwidth"]} ({fmt_bw(p["bandwidth_bytes_s"])})'
        dl = f'{p["downtime_limit_s"] * 1000:g}'
        extra = ' (extrapolated: the trace replayed past its end)' if p['extrapolated'] else ''
        if p['converges']:
            w(f'  {bw:<26} {dl:>6} {p["rounds"]:>6} {p["dirty_sync_count"]:>5} '
              f'{fmt_s(p["total_s"]):>9} {fmt_s(p["downtime_s"]):>9} '
              f'{p["sent_bytes"] / MIB:>6.0f} MiB  converges' + extra)
        else:
            w(f'  {bw:<26} {dl:>6} {p["rounds"]:>6} {p["dirty_sync_count"]:>5} {"-":>9} {"-":>9} '
              f'{"-":>10}  does not converge: {p["why"]}' + extra)
            if 'min_bandwidth_bytes_s' in p:
                v = p['min_bandwidth_bytes_s']
                w('      at this downtime limit it would converge from max-bandwidth '
                  + (f'~{fmt_bw(v)}' if v else
                     f'- (not even at the link\'s {fmt_bw(s["link_bandwidth"])})'))
            if 'min_downtime_limit_s' in p:
                v = p['min_downtime_limit_s']
                w('      at this max-bandwidth it would converge from a downtime limit of '
                  + (f'~{v * 1000:.0f} ms' if v else '- (none found)'))
        sp = p.get('start_phases')
        if sp and sp['count'] > 1:
            head = (f'      the median of {sp["count"]} starts at points of the trace '
                    f'(this one {fmt_s(p["trace_start_s"])} in): converges in ')
            if sp['converges']:
                lo, hi = sp['total_s']
                r0, r1 = sp['rounds']
                d0, d1 = sp['downtime_s']
                w(head + f'{sp["converges"]} of {sp["count"]}; total {fmt_s(lo)} to '
                  f'{fmt_s(hi)}, rounds {r0} to {r1}, downtime {fmt_s(d0)} to {fmt_s(d1)}')
            else:
                w(head + 'none')
        if show_rounds:
            for i, r in enumerate(p['round_list']):
                w(f'      round {i:>3}: {fmt_s(r["start_s"]):>9} + {fmt_s(r["length_s"]):>9} '
                  f'{r["pages"]:>9} pages ({r["zero_pages"]} zero) {r["bytes"] / MIB:>8.1f} MiB, '
                  f'then {r["dirty_pages"]} dirty')
