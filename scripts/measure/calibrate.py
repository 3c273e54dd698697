# SPDX-License-Identifier: GPL-2.0-or-later
"""measure.calibrate: the host's own costs, for bt-report --calibration.

validate.py --calibrate (and make validate, before its cases, when the
cache is missing or stale) migrates guests that do nothing, on this host
and its loopback link, and derives what a log cannot show: a page's cost
at the link and at the destination, the setup, the downtime's fixed part,
the device state and the socket buffer.  The result is cached in
BUILD/validate/calibration.json, keyed by the QEMU binary and the host.
"""

import json
import os
import shutil
import socket
import statistics
import tempfile
import time

from measure import MIB
from measure.guest import (FAILED, READY, SRC_TRACE_EVENTS, Qemu, guest_cmd,
                           kvm_case, kvm_unusable_reason, linux_case, migrate)

# Calibration: the host's own costs, measured by migrations that are not
# the grid's (no workload running, or none that matters), on the same host
# and the same loopback link.  What the simulator needs (btrace/simulate.py
# of the analyzer) and where each figure comes from:
#
#   link_bandwidth, dest_page_s, dest_zero_s
#                  a normal / zero page the destination already has, with no
#                  rate limit (the source: ram_save_target_page ->
#                  save_normal_page / save_zero_page; the destination:
#                  ram_load_precopy -> qemu_get_buffer / ram_handle_zero):
#                  paused guests (nothing dirties RAM: one pass), RAM mostly
#                  non-zero (the demo guest with bt.fill) and mostly zero
#                  (the boot-block guest under TCG), into a destination
#                  started with -mem-prealloc.  The span from the setup sync
#                  (migration_bitmap_sync_end in ram_init_bitmaps) to the
#                  stop (migration_completion_vm_stop) is the pages sent,
#                  ram.normal and ram.duplicate count them: two equations,
#                  two unknowns.
#   dest_first_page_s, dest_zero_first_s
#                  the same into a fresh destination, whose RAM is populated
#                  page by page as they arrive; the non-zero run under a rate
#                  limit of LIMITED_MIB_S (with none, the destination's page
#                  faults race the source and come out several times slower
#                  and very noisy: recorded as first_page_unlimited_s, not
#                  used)
#   socket_buffer_bytes  the host's TCP sysctls (socket_buffer_bytes())
#   setup_s        query-migrate's total-time minus what followed the setup
#                  sync (qmp_migrate / migrate_init -> migration_thread ->
#                  qemu_savevm_state_setup -> ram_init_bitmaps), per accel
#   completion_s   the downtime of a migration with nothing left to send
#                  (downtime-limit 1 ms: the last pre-copy sync leaves
#                  nothing): migration_stop_vm (vm_stop_force_state),
#                  ram_save_complete's sync, the devices' state
#                  (qemu_savevm_state_complete_precopy_non_iterable) and the
#                  flush; for TCG from a RUNNING guest (pause_all_vcpus is
#                  part of it), minus the RAM it still sent at normal_page_s;
#                  for KVM from the paused boot-block guest
#   device_state_bytes  ram.transferred - precopy-bytes - downtime-bytes
#                  (ram_transferred_add counts RAM only)

CALIBRATION_VERSION = 2
UNLIMITED_MIB_S = 1 << 20      # 1 TiB/s: migration_rate_exceeded() never trips
LIMITED_MIB_S = 512            # the highest max-bandwidth of the grids


def calibration_runs(quick):
    ram = 512 if quick else 1024
    fill = 320 if quick else 768
    reps = 1 if quick else 3
    # RAM mostly zero: the boot-block guest under TCG (a few hundred
    # non-zero pages); mostly non-zero: the demo guest with bt.fill
    zero = dict(kvm_case(4, UNLIMITED_MIB_S, 1, ram=ram), accel='tcg')
    nonzero = linux_case('seq', 1, 1, UNLIMITED_MIB_S, 1, fill=fill, ram=ram)
    # the same under a rate limit as high as the grids' highest: the
    # destination populating its RAM then, not racing an unlimited source
    limited = dict(nonzero, bandwidth_mib_s=LIMITED_MIB_S)
    runs = [
        {'name': 'tcg-nonzero-limited', 'case': limited, 'paused': True, 'reps': reps},
        {'name': 'tcg-zero', 'case': zero, 'paused': True, 'reps': reps},
        # the destination's RAM populated before the pages arrive
        # (-mem-prealloc): what a page it already has costs
        {'name': 'tcg-nonzero-prealloc', 'case': nonzero, 'paused': True, 'reps': reps,
         'dst_args': ['-mem-prealloc']},
        {'name': 'tcg-zero-prealloc', 'case': zero, 'paused': True, 'reps': reps,
         'dst_args': ['-mem-prealloc']},
        {'name': 'kvm-paused', 'case': kvm_case(4, UNLIMITED_MIB_S, 1),
         'paused': True, 'reps': 1 if quick else 2},
    ]
    if not quick:
        runs.append({'name': 'tcg-nonzero', 'case': nonzero, 'paused': True, 'reps': reps})
        runs.append({'name': 'tcg-running',
                     'case': linux_case('seq', 1, 1, UNLIMITED_MIB_S, 1, ram=ram),
                     'paused': False, 'reps': 1})
    for r in runs:
        r['case'] = dict(r['case'], name='calibrate-' + r['name'])
    return runs


def socket_buffer_bytes():
    """What a loopback TCP connection holds in flight before the sender's
    write blocks: the sender's send buffer, which Linux autotunes up to
    tcp_wmem's maximum on a fast path, and the receiver's window, half its
    receive buffer (tcp_adv_win_scale 1), which dynamic right-sizing grows
    only as fast as the application reads: a slow destination keeps it near
    tcp_rmem's default.  A host property, read off its sysctls."""
    try:
        w = int(open('/proc/sys/net/ipv4/tcp_wmem').read().split()[2])
        r = int(open('/proc/sys/net/ipv4/tcp_rmem').read().split()[1])
        scale = int(open('/proc/sys/net/ipv4/tcp_adv_win_scale').read())
    except (OSError, ValueError, IndexError):
        return 4 * MIB
    win = r - (r >> scale) if scale > 0 else r >> -scale
    return w + win


def calibration_key(qemu):
    st = os.stat(os.path.realpath(qemu))
    import hashlib
    h = hashlib.sha256()
    with open(os.path.realpath(qemu), 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    cpu = ''
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    return {'version': CALIBRATION_VERSION, 'qemu_sha256': h.hexdigest(),
            'qemu_size': st.st_size, 'host': socket.gethostname(),
            'cpus': os.cpu_count(), 'cpu_model': cpu}


def one_calibration_migration(run, src, dst, say):
    case = run['case']
    real = migrate(case, src, dst, 30, say)
    s = real['summary']
    if real['status'] != 'completed':
        raise RuntimeError(f"calibration migration {real['status']}")
    st = real.get('sync_trace') or {}
    # the source's trace log has every migration of it: this one's events
    # come after its migrate command (t >= 0)
    syncs = [x for x in st.get('syncs') or [] if x['t_s'] >= 0]
    stop = st.get('vm_stop_s')
    qm = real['query_migrate']
    ram = qm.get('ram', {})
    m = {'total_s': s['total_ms'] / 1000, 'setup_time_s': s['setup_ms'] / 1000,
         'downtime_s': s['downtime_ms'] / 1000, 'normal': s['ram_normal_pages'],
         'zero': s['ram_duplicate_pages'], 'transferred': s['ram_transferred'],
         'precopy_bytes': s['precopy_bytes'], 'downtime_bytes': s['downtime_bytes'],
         'dirty_sync_count': s['dirty_sync_count'], 'mbps': s['mbps'],
         'page_size': ram.get('page-size', 4096),
         'max_bandwidth': real['parameters'].get('max-bandwidth'),
         'timeline': real['timeline']}
    if syncs and stop is not None:
        m['setup_sync_s'] = syncs[0]['t_s']
        m['send_s'] = stop - syncs[0]['t_s']       # setup sync -> vm stop
        m['stop_s'] = stop
        m['setup_s'] = m['total_s'] - m['downtime_s'] - m['send_s']
    m['device_state_bytes'] = (m['transferred'] - (m['precopy_bytes'] or 0) -
                               (m['downtime_bytes'] or 0))
    return m


def run_calibration(args, rundir, quick):
    """Migrate the calibration guests; returns the raw measurements."""
    kvm_why = kvm_unusable_reason()
    raw = {}
    for run in calibration_runs(quick):
        case = run['case']
        def say(msg, _n=run['name']):
            print(f'  [calibrate {_n}] {msg}', flush=True)
        if case['accel'] == 'kvm' and kvm_why:
            say(f'skipped: KVM: {kvm_why}')
            continue
        ms = []
        errors = []
        for k in range(run['reps']):
            # a fresh source each time: QEMU refuses to migrate a VM paused
            # by an earlier migration
            outdir = os.path.join(args.calib_dir, f"{run['name']}-{k}")
            shutil.rmtree(outdir, ignore_errors=True)
            os.makedirs(outdir)
            crun = tempfile.mkdtemp(prefix='cal-' + run['name'] + '.', dir=rundir)
            cmd = guest_cmd(case, args.qemu, args.build, outdir)
            src = Qemu('src', cmd, crun, outdir, SRC_TRACE_EVENTS)
            dst = Qemu('dst', cmd + ['-incoming', 'defer'] + run.get('dst_args', []),
                       crun, outdir)
            try:
                src.start()
                src.await_console(READY[case['guest']], 180, FAILED[case['guest']])
                if case['guest'] == 'linux' and not run['paused']:
                    time.sleep(1.0)
                if run['paused']:
                    src.cmd_('stop')
                dst.start()
                m = one_calibration_migration(run, src, dst, say)
                ms.append(m)
                say(f"total {m['total_s'] * 1000:.0f} ms, setup-time {m['setup_time_s'] * 1000:.0f}"
                    f" ms, send {m.get('send_s', 0) * 1000:.1f} ms, downtime "
                    f"{m['downtime_s'] * 1000:.0f} ms, normal {m['normal']}, zero {m['zero']}, "
                    f"{m['mbps']:.0f} Mbit/s, max-bandwidth {m['max_bandwidth']}")
            except Exception as e:  # noqa: BLE001
                errors.append(f'{type(e).__name__}: {e}')
                say(f'error: {errors[-1]}')
            finally:
                src.stop()
                dst.stop()
                shutil.rmtree(crun, ignore_errors=True)
        raw[run['name']] = {'case': case, 'paused': run['paused'], 'runs': ms,
                            'errors': errors}
    return raw


def derive_calibration(raw):
    """The simulator's parameters from the calibration migrations."""
    med = statistics.median

    def runs(name):
        r = raw.get(name) or {}
        return [m for m in r.get('runs', []) if m.get('send_s') is not None]

    out = {}

    def solve(a, b):
        """send_s = normal x Tn + zero x Tz, one equation per run (the
        medians of its repetitions): Cramer's rule."""
        an, az, at = (med([m[k] for m in a]) for k in ('normal', 'zero', 'send_s'))
        bn, bz, bt = (med([m[k] for m in b]) for k in ('normal', 'zero', 'send_s'))
        det = an * bz - az * bn
        return (at * bz - az * bt) / det, (an * bt - at * bn) / det

    a, b = runs('tcg-nonzero-limited'), runs('tcg-zero')
    if not a or not b:
        raise RuntimeError('calibration: the paused TCG migrations failed: ' +
                           '; '.join(str((raw.get(n) or {}).get('errors')) for n in
                                     ('tcg-nonzero-limited', 'tcg-zero')))
    ps = a[0]['page_size']
    # into a fresh destination: every page is new there.  The non-zero run
    # is rate-limited at LIMITED_MIB_S: its per-page figure is the
    # destination's when it is the slower, else the limit's (an upper bound
    # of the destination's: it kept up)
    tn, tz = solve(a, b)
    if tn <= 0:
        raise RuntimeError(f'calibration: a normal page costs {tn:g} s: too noisy')
    tz = max(tz, 0.0)
    u = runs('tcg-nonzero')
    if u:
        # with no rate limit: recorded, not used (the destination's page
        # faults race an unlimited source and come out much slower)
        out['first_page_unlimited_s'] = solve(u, b)[0]
    out['limited_check'] = {
        'max_bandwidth': LIMITED_MIB_S * MIB,
        'throughput': med([(m['transferred'] - m['device_state_bytes']) / m['send_s']
                           for m in a])}
    # into a preallocated one: what a page the destination already has costs
    pa, pb = runs('tcg-nonzero-prealloc'), runs('tcg-zero-prealloc')
    if pa and pb:
        rn, rz = solve(pa, pb)
    else:
        rn, rz = tn, tz
    rn = min(max(rn, 1e-9), tn)
    rz = min(max(rz, 0.0), tz)
    out['first_page_s'] = tn
    out['zero_page_total_s'] = tz
    out['normal_page_s'] = rn
    out['zero_page_again_s'] = rz
    # The simulator's source sends a normal page in (page + 8) / link;
    # the destination, a stage of its own, takes each page in its own time.
    # The figures above are the slower of the two stages; they are put on
    # the destination too, which the fresh-against-preallocated difference
    # shows to be the slower one for pages new to it.  A zero page's scan
    # at the source is the log's zero-us.
    out['link_bandwidth'] = (ps + 8) / rn
    out['dest_page_s'] = rn
    out['dest_first_page_s'] = tn
    out['dest_zero_s'] = rz
    out['dest_zero_first_s'] = tz
    out['page_cpu_s'] = 0.0
    out['socket_buffer_bytes'] = socket_buffer_bytes()
    out['device_state_bytes'] = int(med([m['device_state_bytes'] for m in a + b]))
    setup = {'tcg': med([m['setup_s'] for m in a + pa + u])}
    # paused: nothing was sent in the downtime but the devices' state
    completion = {'tcg-paused': med([m['downtime_s'] for m in a + pa + u])}
    c = runs('tcg-running')
    if c:
        ram_s = [max(m['downtime_bytes'] or 0, 0) / out['link_bandwidth'] for m in c]
        completion['tcg'] = med([max(m['downtime_s'] - r, 0.0) for m, r in zip(c, ram_s)])
        setup['tcg-running'] = med([m['setup_s'] for m in c])
    else:
        completion['tcg'] = completion['tcg-paused']
    k = runs('kvm-paused')
    if k:
        setup['kvm'] = med([m['setup_s'] for m in k])
        completion['kvm'] = med([m['downtime_s'] for m in k])
    out['setup_s'] = setup
    out['completion_s'] = completion
    return out


def calibrate(args, rundir, quick, force=False):
    """Cached calibration: OUT/calibration.json, keyed by the QEMU binary and
    the host; runs it when missing, stale or forced."""
    path = args.calibration_file
    key = calibration_key(args.qemu_orig)
    if not force and os.path.exists(path):
        try:
            doc = json.load(open(path))
            if doc.get('key') == key and (quick or not doc.get('quick')):
                print(f'validate: calibration from {path} (cached)', flush=True)
                return doc
        except (OSError, ValueError):
            pass
    print(f'validate: calibrating (workload-free migrations on this host; '
          f'{"quick" if quick else "full"})', flush=True)
    t = time.monotonic()
    raw = run_calibration(args, rundir, quick)
    derived = derive_calibration(raw)
    doc = {'key': key, 'quick': quick, 'when': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
           'wall_s': round(time.monotonic() - t, 1), 'raw': raw}
    doc.update(derived)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + '.tmp', 'w') as f:
        json.dump(doc, f, indent=1)
    os.replace(path + '.tmp', path)
    print('validate: calibration: ' + calibration_summary(doc), flush=True)
    return doc


def calibration_summary(doc):
    return (f"link {doc['link_bandwidth'] / 1e6:.0f} MB/s (normal page sent again "
            f"{doc['normal_page_s'] * 1e6:.2f} us, first time "
            f"{doc['first_page_s'] * 1e6:.2f} us), zero page {doc['zero_page_again_s'] * 1e6:.2f}"
            f" us (first time {doc['zero_page_total_s'] * 1e6:.2f} us), setup " + ', '.join(f'{k} {v * 1000:.1f} ms' for k, v in doc['setup_s'].items())
            + ', completion ' + ', '.join(f'{k} {v * 1000:.1f} ms'
                                          for k, v in doc['completion_s'].items())
            + f", device state {doc['device_state_bytes'] / 1024:.0f} KiB")
