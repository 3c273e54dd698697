# SPDX-License-Identifier: GPL-2.0-or-later
"""measure.compare: bt-report's prediction against the real migration.

compare() gives one case's signed errors (predicted - real, in % or ms),
summarise() the median and p90 |error| of each quantity over a grid, and
table() / markdown() print them: the fixed-width table make validate
prints, and the same as Markdown for the results file.
"""

import math
import statistics

from measure import MIB
from measure.markdown import md_table


# (prediction field, real summary field, comparison key): compared when the
# prediction has the field
EXTRA_FIELDS = [('dirty_sync_count', 'dirty_sync_count', 'syncs'),
                ('precopy_bytes', 'precopy_bytes', 'precopy_bytes'),
                ('downtime_bytes', 'downtime_bytes', 'downtime_bytes'),
                ('normal_pages', 'ram_normal_pages', 'normal_pages'),
                ('zero_pages', 'ram_duplicate_pages', 'zero_pages')]


def pct(pred, real):
    if pred is None or real is None or real == 0:
        return None
    return 100.0 * (pred - real) / real


def compare(pred, real):
    c = {'predicted_converges': bool(pred and pred.get('converges')),
         'real_converged': real['converged']}
    c['verdict_agrees'] = c['predicted_converges'] == c['real_converged']
    if pred and pred.get('rounds') is not None and real.get('rounds') is not None:
        c['rounds_pred'] = pred['rounds']
        c['rounds_real'] = real['rounds']
    if c['predicted_converges'] and c['real_converged']:
        # A non-converging prediction stops counting at --max-rounds or at
        # the first round no shorter than the one before; a cancelled
        # migration at the cap: neither count means anything to compare.
        if 'rounds_pred' in c:
            c['rounds_err'] = c['rounds_pred'] - c['rounds_real']
        # Tolerate a prediction without some of the fields.
        tp = pred.get('total_s')
        dp = pred.get('downtime_s')
        if tp is not None:
            c['total_ms_pred'] = tp * 1000
            c['total_ms_real'] = real['total_ms']
            c['total_err_pct'] = pct(tp * 1000, real['total_ms'])
        if dp is not None:
            c['downtime_ms_pred'] = dp * 1000
            c['downtime_ms_real'] = real['downtime_ms']
            if real['downtime_ms'] is not None:
                c['downtime_err_ms'] = dp * 1000 - real['downtime_ms']
            c['downtime_err_pct'] = pct(dp * 1000, real['downtime_ms'])
        # Fields a simulator may add, next to what query-migrate says
        for pk, rk, ck in EXTRA_FIELDS:
            if pred.get(pk) is not None and real.get(rk) is not None:
                c[ck + '_pred'] = pred[pk]
                c[ck + '_real'] = real[rk]
                c[ck + '_err_pct'] = pct(pred[pk], real[rk])
        c['bytes_pred'] = pred.get('sent_bytes')
        c['bytes_real'] = real['ram_transferred']
        c['bytes_err_pct'] = pct(pred.get('sent_bytes'), real['ram_transferred'])
    # bt-report's spread over where in the trace the migration starts
    # (--start-phases): is the real migration inside it?
    sp = (pred or {}).get('start_phases')
    if sp and sp.get('count', 1) > 1:
        c['phases'] = sp['count']
        c['phases_converge'] = sp['converges']
        if c['real_converged'] and sp.get('total_s'):
            lo, hi = sp['total_s']
            c['total_ms_range'] = [lo * 1000, hi * 1000]
            # the error of the nearer end: 0 inside the spread
            near = min(max(real['total_ms'], lo * 1000), hi * 1000)
            c['total_err_spread_pct'] = pct(near, real['total_ms'])
        if real.get('rounds') is not None and sp.get('rounds') and c['real_converged']:
            c['rounds_range'] = sp['rounds']
            c['rounds_in_range'] = sp['rounds'][0] <= real['rounds'] <= sp['rounds'][1]
    return c


def per_round(pred, real):
    """Round by round: the prediction's round lengths (round_s) and any
    other per-round list it has, next to the real rounds from the sync
    trace (the interval from the last pre-copy sync to the final one is the
    switchover, not a round)."""
    st = real.get('sync_trace') or {}
    rr = st.get('rounds') or []
    n_real = real['summary'].get('rounds')
    if n_real is not None:
        rr = rr[:max(n_real, 0)]
    pred = pred or {}
    extra = {k: v for k, v in pred.items()
             if isinstance(v, list) and k != 'round_s'}
    out = []
    for k in range(max(len(pred.get('round_s') or []), len(rr))):
        row = {'round': k}
        if k < len(pred.get('round_s') or []):
            row['pred_s'] = pred['round_s'][k]
        if k < len(rr):
            row['real_s'] = rr[k]['length_s']
            row['real_dirtied_pages'] = rr[k]['dirtied_pages']
        for key, v in extra.items():
            if k < len(v):
                row['pred_' + key] = v[k]
        out.append(row)
    return out


def p90(xs):
    xs = sorted(xs)
    if not xs:
        return None
    k = 0.9 * (len(xs) - 1)
    f = math.floor(k)
    return xs[f] + (xs[min(f + 1, len(xs) - 1)] - xs[f]) * (k - f)


QUANTITIES = [('total_err_pct', 'total time', '%'),
              ('downtime_err_ms', 'downtime', 'ms'),
              ('downtime_err_pct', 'downtime', '%'),
              ('rounds_err', 'rounds', ''),
              ('bytes_err_pct', 'bytes sent', '%'),
              # only when the prediction has these fields
              ('syncs_err_pct', 'dirty-sync-count', '%'),
              ('precopy_bytes_err_pct', 'precopy bytes', '%'),
              ('downtime_bytes_err_pct', 'downtime bytes', '%'),
              ('normal_pages_err_pct', 'normal pages', '%'),
              ('zero_pages_err_pct', 'zero pages', '%')]
CORE = 5


def summarise(results):
    s = {}
    done = [r for r in results if 'comparison' in r]
    for key, _, _ in QUANTITIES:
        xs = [abs(r['comparison'][key]) for r in done
              if r['comparison'].get(key) is not None]
        s[key] = {'n': len(xs),
                  'median_abs': statistics.median(xs) if xs else None,
                  'p90_abs': p90(xs)}
    rr = [r['comparison']['rounds_err'] for r in done
          if r['comparison'].get('rounds_err') is not None]
    s['rounds_within_1'] = sum(1 for x in rr if abs(x) <= 1)
    s['rounds_compared'] = len(rr)
    s['verdict_agree'] = sum(1 for r in done if r['comparison']['verdict_agrees'])
    xs = [r['comparison']['rounds_in_range'] for r in done
          if 'rounds_in_range' in r['comparison']]
    s['rounds_in_range'] = [sum(xs), len(xs)]
    xs = [abs(r['comparison']['total_err_spread_pct']) for r in done
          if r['comparison'].get('total_err_spread_pct') is not None]
    s['total_err_spread_pct'] = {'n': len(xs), 'median_abs': statistics.median(xs) if xs else None,
                                 'p90_abs': p90(xs)}
    s['verdict_cases'] = len(done)
    s['cases'] = len(results)
    s['errors'] = sum(1 for r in results if 'error' in r)
    s['skipped'] = sum(1 for r in results if 'skipped' in r)
    return s


def fmt(v, f='{:+.0f}'):
    return '-' if v is None else f.format(v)


# The columns of the per-case table: (text header, width, Markdown header)
COLUMNS = [('pred', 5, 'predicted'), ('real', 5, 'real'),
           ('total pred/real s', 17, 'total time pred / real, s'), ('err%', 6, 'error %'),
           ('dt pred/real ms', 15, 'downtime pred / real, ms'), ('err ms', 7, 'error, ms'),
           ('rnd p/r', 7, 'rounds pred / real'), ('MiB pred/real', 13, 'MiB sent pred / real'),
           ('err%', 6, 'error %')]


def case_cells(r):
    """The cells of one case's row, or None when it has no comparison
    (skipped, or an error: case_note() says which)."""
    if 'skipped' in r or 'comparison' not in r:
        return None
    c = r['comparison']
    v = lambda b: 'conv' if b else 'no'  # noqa: E731
    tot = (f"{c['total_ms_pred'] / 1000:.1f}/{c['total_ms_real'] / 1000:.1f}"
           if 'total_ms_pred' in c else '-')
    dt = (f"{c['downtime_ms_pred']:.0f}/{c['downtime_ms_real']}"
          if 'downtime_ms_pred' in c else '-')
    rnd = f"{c.get('rounds_pred', '-')}/{c.get('rounds_real', '-')}"
    by = (f"{c['bytes_pred'] / MIB:.0f}/{c['bytes_real'] / MIB:.0f}"
          if c.get('bytes_pred') is not None and c.get('bytes_real') is not None else '-')
    return [v(c['predicted_converges']), v(c['real_converged']), tot,
            fmt(c.get('total_err_pct')), dt, fmt(c.get('downtime_err_ms')), rnd, by,
            fmt(c.get('bytes_err_pct'))]


def case_note(r):
    if 'skipped' in r:
        return f"skipped: {r['skipped']}"
    return f"error: {r.get('error')}"


def summary_lines(summary, pad=True):
    """The grid's |error| medians and p90s, rounds and verdicts, a line each."""
    lines = []
    for i, (key, what, unit) in enumerate(QUANTITIES):
        q = summary[key]
        if i >= CORE and not q['n']:
            continue
        label = what + (' (' + unit + ')' if unit else '')
        lines.append(f"|error| of {label:{22 if pad else 0}}: "
                     f"median {fmt(q['median_abs'], '{:.1f}')}, "
                     f"p90 {fmt(q['p90_abs'], '{:.1f}')} (n={q['n']})")
    if summary.get('rounds_compared'):
        lines.append(f"rounds within +-1 of the real sync rounds: {summary['rounds_within_1']} "
                     f"of {summary['rounds_compared']} "
                     f"({100 * summary['rounds_within_1'] / summary['rounds_compared']:.0f} %)")
    n, m = summary.get('rounds_in_range', [0, 0])
    if m:
        lines.append(f"real sync rounds within the predicted spread over start points: "
                     f"{n} of {m}")
    q = summary.get('total_err_spread_pct')
    if q and q['n']:
        lines.append(f"|error| of total time to that spread (%, 0 inside): median "
                     f"{fmt(q['median_abs'], '{:.1f}')}, p90 {fmt(q['p90_abs'], '{:.1f}')} "
                     f"(n={q['n']})")
    lines.append(f"verdict (converges or not) agrees in {summary['verdict_agree']} of "
                 f"{summary['verdict_cases']} cases; {summary['errors']} errors, "
                 f"{summary['skipped']} skipped")
    return lines


def table(results, summary):
    """The fixed-width table make validate prints."""
    hdr = f"{'case':38} " + ' '.join(f'{h:>{w}}' for h, w, _ in COLUMNS)
    lines = [hdr, '-' * len(hdr)]
    for r in results:
        name = r['case']['name']
        cells = case_cells(r)
        if cells is None:
            lines.append(f'{name:38} {case_note(r)}')
            continue
        lines.append(f'{name:38} ' + ' '.join(f'{x:>{w}}' for x, (_, w, _) in
                                              zip(cells, COLUMNS)))
    lines.append('')
    lines += summary_lines(summary)
    return '\n'.join(lines)


def markdown(results, summary):
    """The same as table(), in Markdown: the table, then the summary as a
    list (a case without a comparison is a row with its reason)."""
    rows = []
    for r in results:
        cells = case_cells(r)
        if cells is None:
            cells = [case_note(r)] + [''] * (len(COLUMNS) - 1)
        rows.append([f"`{r['case']['name']}`"] + cells)
    out = md_table(['case'] + [m for _, _, m in COLUMNS], rows)
    out += '\n\n' + '\n'.join('- ' + x.replace('|error|', '\\|error\\|')
                              for x in summary_lines(summary, pad=False))
    return out
