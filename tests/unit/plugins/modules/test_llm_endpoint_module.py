# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""llm_endpoint main() through patch_module_args, against the in-process TGI and Ollama replay servers."""

from __future__ import annotations

import json

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.onprem.llm_serving.plugins.modules import llm_endpoint
from ansible_collections.onprem.llm_serving.tests.integration.replay.replay_servers import OllamaReplay, TgiReplay


def run(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            llm_endpoint.main()
    out = capsys.readouterr().out
    result = json.loads(out)
    result["rc"] = info.value.code
    return result, out


def test_tgi_replay_passes_and_changes_nothing(capsys):
    with TgiReplay() as srv:
        result, _out = run(capsys, {"url": srv.url, "max_tokens": 10, "min_tokens": 10})
    assert result["rc"] == 0 and result["changed"] is False
    assert result["engine"] == "tgi" and [c["output_tokens"] for c in result["checks"]] == [10, 10]


def test_check_mode_runs_the_read_only_checks(capsys):
    with OllamaReplay() as srv:
        result, _out = run(capsys, {"url": srv.url, "model": "tiny", "_ansible_check_mode": True, "apis": ["generate"]})
    assert result["rc"] == 0 and result["changed"] is False and len(result["checks"]) == 2


def test_api_key_never_reaches_the_result(capsys):
    with TgiReplay(api_key="hunter2-key") as srv:
        result, out = run(capsys, {"url": srv.url, "engine": "tgi", "api_key": "hunter2-key"})
    assert result["rc"] == 0
    assert "hunter2-key" not in out
    assert result["invocation"]["module_args"]["api_key"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def test_failure_says_what_was_called_and_how_to_fix(capsys):
    with OllamaReplay() as srv:
        result, _out = run(capsys, {"url": srv.url, "model": "llama3", "engine": "ollama"})
    assert result["rc"] == 1 and result["failed"] is True
    assert result["msg"].startswith("llm_endpoint %s (engine=ollama, model=llama3): GET %s/api/tags" % (srv.url, srv.url))
    assert "model 'llama3' is not served; served: [\"tiny:latest\"]" in result["msg"]


@pytest.mark.parametrize("args, words", [
    ({"url": "http://127.0.0.1:9", "min_tokens": 40, "max_tokens": 32}, "min_tokens (40) is larger than max_tokens (32)"),
    ({"url": "ftp://x"}, "is not an http:// or https:// URL"),
    ({"url": "http://127.0.0.1:9", "engine": "tgi", "apis": ["chat"]}, "apis entry 'chat' is not an API of engine tgi"),
])
def test_option_errors(capsys, args, words):
    result, _out = run(capsys, args)
    assert result["rc"] == 1 and words in result["msg"]
