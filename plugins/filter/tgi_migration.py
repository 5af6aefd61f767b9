# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters of the TGI -> vLLM migration; the logic is plugins/module_utils/_tgi_to_vllm.py (pure, unit-tested).

- tgi_to_vllm: one TGI instance (an entry of the tgi role's __tgi_instances, after its defaults) as
  ``{instance: <a vllm_instances entry>, notes: [...], refused: [...]}``. The mapping table is in roles/tgi/README.md.

    {{ tgi_instance | onprem.llm_serving.tgi_to_vllm(gpu_count=0, aliases=['tgi'], tgi_env=tgi_env) }}

  With ``strict=true`` an instance with anything in ``refused`` fails, every refusal in the message.
  The result carries the API key (``instance.api_key``, ``instance.env``): use it with no_log; ``notes`` and
  ``refused`` never hold a key, an environment value or a secret option's value.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.onprem.llm_serving.plugins.module_utils._tgi_to_vllm import TgiMigrationError
from ansible_collections.onprem.llm_serving.plugins.module_utils._tgi_to_vllm import tgi_to_vllm as _tgi_to_vllm


def tgi_to_vllm(instance, gpu_count=None, aliases=None, tgi_env=None, strict=False):
    """{instance, notes, refused} for one TGI instance; AnsibleFilterError naming the TGI key and the fix."""
    try:
        result = _tgi_to_vllm(instance, gpu_count=gpu_count, aliases=aliases, tgi_env=tgi_env)
    except TgiMigrationError as exc:
        raise AnsibleFilterError("tgi_to_vllm: %s" % exc) from exc
    if strict and result["refused"]:
        raise AnsibleFilterError(
            "tgi_to_vllm: %s cannot move to vLLM as it is (%d refused): %s. Fix these on the TGI instance (or set them "
            "on the vLLM instance yourself), then migrate again"
            % ("tgi_instances[%s]" % result["instance"]["name"], len(result["refused"]), "; ".join(result["refused"])))
    return result


class FilterModule:
    def filters(self):
        return {"tgi_to_vllm": tgi_to_vllm}
