# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Options of the HTTP client every endpoint module shares (module_utils._llm_http.CLIENT_ARGSPEC)."""
from __future__ import annotations


class ModuleDocFragment:  # pylint: disable=too-few-public-methods
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of the engine, without C(/v1), for example V(http://gpu01:8000) (vLLM), V(http://gpu01:3000) (TGI),
        V(http://gpu01:11434) (Ollama). A path prefix (reverse proxy) is kept.
    type: str
    required: true
  api_key:
    description:
      - Bearer token sent as C(Authorization) (vLLM C(--api-key), an OpenAI-compatible proxy). Never logged or returned.
    type: str
  headers:
    description: Extra HTTP headers sent with every request.
    type: dict
    default: {}
  validate_certs:
    description: Verify the server's TLS certificate for V(https) URLs.
    type: bool
    default: true
  ca_path:
    description: PEM file of the CA(s) that signed the server's certificate.
    type: path
  client_cert:
    description: PEM client certificate for mutual TLS.
    type: path
  client_key:
    description: PEM private key of O(client_cert), if it is not inside that file.
    type: path
"""
