# SPDX-License-Identifier: GPL-2.0-or-later
"""measure.machine: what the host is, for the results files.

Every figure of make validate and make bench depends on the machine and on
what else runs on it, so each results file starts with this: host name,
CPU model and count, memory, kernel, load average, the QEMU binary and its
version, and whether KVM is usable (and why not).
"""

import os
import socket
import subprocess
import time

from measure import GIB


def cpu_model():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return '?'


def mem_gib():
    return round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GIB, 1)


def qemu_version(qemu):
    try:
        r = subprocess.run([qemu, '-version'], capture_output=True, text=True, timeout=20)
        return r.stdout.splitlines()[0].strip() if r.stdout else '?'
    except (OSError, subprocess.SubprocessError, IndexError):
        return '?'


def kvm_kind():
    """'PVM' when /dev/kvm is kvm_pvm (no hardware virtualization), else
    the vendor module loaded, else None."""
    for mod, what in (('kvm_pvm', 'PVM'), ('kvm_intel', 'VMX'), ('kvm_amd', 'SVM')):
        if os.path.isdir(f'/sys/module/{mod}'):
            return what
    return None


def describe(qemu=None, kvm_unusable=None):
    """The machine, as a dict (results.json) with the QEMU's version."""
    load = os.getloadavg()
    kind = kvm_kind()
    return {'host': socket.gethostname(), 'cpu_model': cpu_model(),
            'cpus': os.cpu_count(), 'mem_gib': mem_gib(),
            'kernel': os.uname().release,
            'loadavg': [round(x, 2) for x in load],
            'qemu': qemu, 'qemu_version': qemu_version(qemu) if qemu else None,
            'kvm': (f'unusable: {kvm_unusable}' if kvm_unusable else
                    'usable' + (f' ({kind})' if kind else '')),
            'when': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}


def markdown(m, accel=None):
    """The machine as the first lines of a results file."""
    lines = [f"- measured: {m['when']} on `{m['host']}`",
             f"- CPU: {m['cpus']} x {m['cpu_model']}; memory {m['mem_gib']} GiB; "
             f"Linux {m['kernel']}",
             f"- load average at the start: {' / '.join(f'{x:.2f}' for x in m['loadavg'])} "
             f"(1 / 5 / 15 min)",
             f"- QEMU: {m.get('qemu_version') or '?'} (`{m.get('qemu') or '?'}`)",
             f"- KVM: {m['kvm']}"]
    if accel:
        lines.append(f'- accelerators: {accel}')
    return '\n'.join(lines)
