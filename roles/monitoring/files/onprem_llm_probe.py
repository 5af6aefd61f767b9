# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The monitoring role's textfile probes, run by systemd timers on the serving hosts (installed by roles/monitoring).

    onprem_llm_probe.py endpoints --config /etc/onprem-llm/probe.json   # a tiny generation per endpoint
    onprem_llm_probe.py gpu --config /etc/onprem-llm/probe.json         # gpu_health's results

The logic is the collection's plugins/module_utils/_textfile_probe.py (with _llm_endpoint, _llm_http, _gpu_health,
_nvml), copied by the role into lib/ beside this script. Exit status: 0 when the file was written (a down endpoint or
an unhealthy GPU is a metric, not a failure of the probe), 1 when it could not be.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

from ansible_collections.onprem.llm_serving.plugins.module_utils import _nvml  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.onprem.llm_serving.plugins.module_utils import _textfile_probe as tp  # noqa: E402  pylint: disable=wrong-import-position


def nvml_backend():
    if not _nvml.HAS_PYNVML:
        raise ImportError(str(_nvml.PYNVML_IMPORT_ERROR))
    return _nvml.PynvmlBackend()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["endpoints", "gpu"])
    parser.add_argument("--config", default="/etc/onprem-llm/probe.json")
    args = parser.parse_args(argv)
    try:
        config = tp.load_config(args.config)
        if args.kind == "endpoints":
            path, outcomes = tp.run_endpoints(config)
            for endpoint, outcome in outcomes:
                result = outcome.get("result") or {}
                print("%s: %s" % (endpoint["name"], "up, TTFT %s ms, %s tok/s" % (result.get("ttft_ms"), result.get("tokens_per_s"))
                                  if outcome["up"] else "DOWN: %s" % outcome["error"]))
        else:
            path, state, reason = tp.run_gpu(config, nvml_backend)
            print("GPU probe: %s%s" % (state, " (%s)" % reason if reason else ""))
    except (tp.ProbeError, OSError) as exc:
        print("onprem_llm_probe %s: %s" % (args.kind, exc), file=sys.stderr)
        return 1
    print("wrote %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
