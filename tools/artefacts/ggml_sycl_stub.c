/*
 * Copyright: (c) 2026, onprem.llm_serving contributors
 * GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
 * SPDX-License-Identifier: GPL-3.0-or-later
 *
 * Stand-in for libollama-ggml-sycl.so from Intel's IPEX-LLM build of Ollama
 * (PyPI bigdl-core-cpp). The shipped library aborts on any host without an Intel
 * GPU. The other libraries import exactly these four symbols from it; returning
 * NULL from the registry/init functions makes ggml skip the SYCL backend and run
 * on its CPU backend. See ../shared/OLLAMA.md.
 */
#include <stddef.h>
#include <stdio.h>

void *ggml_backend_sycl_reg(void) { return NULL; }

void *ggml_backend_sycl_init(int device) {
    (void)device;
    return NULL;
}

void ggml_backend_sycl_get_device_name(int device, char *description, size_t description_size) {
    (void)device;
    if (description != NULL && description_size > 0) {
        snprintf(description, description_size, "%s", "none (SYCL disabled)");
    }
}

/* C++ symbol ggml_format_convert_to_xpu(const void *, void *, unsigned long, int): never called on the CPU path. */
void _Z26ggml_format_convert_to_xpuPKvPvmi(const void *src, void *dst, unsigned long n, int type) {
    (void)src;
    (void)dst;
    (void)n;
    (void)type;
}
