# SPDX-License-Identifier: GPL-2.0-or-later
"""btrace: read bitmap-trace logs and predict pre-copy live migration.

  parse     read and validate a log (format v1 or v2)
  model     the pages as migration numbers them, the trace's summaries and
            working set, the old round model
  simulate  a replay simulator of QEMU 10.0 pre-copy
  report    the text report and the JSON document
  plot      the figures (--plot-dir): heatmap, working set, dirty pages per
            window, predicted migration; the only module that needs matplotlib
  export    the CSV files (--csv-dir)
  cli       bt-report's command line
  synth     synthetic logs for tests and benchmarks

scripts/btrace/README says where to start.
"""
