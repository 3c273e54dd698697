# SPDX-License-Identifier: GPL-2.0-or-later
"""btrace: read bitmap-trace logs and predict pre-copy live migration.

bt-report (python3 -m btrace) is cli.py; README.md beside this package
says what each module does and where to start.
"""
