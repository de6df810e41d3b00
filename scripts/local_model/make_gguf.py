"""Writes a tiny llama-architecture GGUF model with random weights, for tests/local_model.rs.

    python make_gguf.py OUT.gguf [--layers N] [--embd N] [--ff N]

Nothing is downloaded: the weights come from a seeded generator, the tokenizer is a
SentencePiece-style ("llama") vocabulary of single characters plus the 256 byte-fallback
tokens, so any text tokenizes, about one token per character.

Random weights answer gibberish, but two things are arranged so the tests can rely on them:
the model never ends an answer by itself (it runs to `max_tokens` or the context's end), and
it answers in printable characters. Residual dimension 0 is held at +1 for every position
(every embedding has 1.0 there, and no attention or feed-forward output writes to it), so
after the final RMS norm it is a large positive number; the output rows of the control tokens
(`</s>` among them) and of the byte tokens carry -4 there, the others 0, which puts those
tokens' logits tens below every printable one.
"""

import argparse

import gguf
import numpy as np

UNK, BOS, EOS = 0, 1, 2
CHARS = (
    "abcdefghijklmnopqrstuvwxyz"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "0123456789"
    ".,;:!?'\"()-_/+*=<>[]{}@#$%&|"
)


def vocabulary():
    """Tokens, scores and types: control tokens, the 256 bytes, then printable pieces."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    pieces = ["\u2581"] + list(CHARS) + ["\u2581" + c for c in CHARS]
    tokens += pieces
    types += [gguf.TokenType.NORMAL] * len(pieces)
    scores = [0.0] * len(tokens)
    # Longer pieces win in the SentencePiece merge (higher score first).
    for i, t in enumerate(tokens):
        if types[i] == gguf.TokenType.NORMAL:
            scores[i] = -1.0 / len(t)
    return tokens, scores, [int(t) for t in types]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--embd", type=int, default=256)
    ap.add_argument("--ff", type=int, default=768)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--train-ctx", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=8825)
    a = ap.parse_args()

    tokens, scores, types = vocabulary()
    n_vocab, n_embd, n_ff = len(tokens), a.embd, a.ff
    head_dim = n_embd // a.heads
    n_kv = head_dim * a.kv_heads
    rng = np.random.default_rng(a.seed)

    def rand(*shape, std=0.02):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    w = gguf.GGUFWriter(a.out, "llama")
    w.add_name("maestra-test-tiny")
    w.add_context_length(a.train_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(a.layers)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(a.heads)
    w.add_head_count_kv(a.kv_heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(head_dim)
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(UNK)
    w.add_bos_token_id(BOS)
    w.add_eos_token_id(EOS)
    w.add_add_bos_token(True)

    # numpy shape (rows, cols) = ggml (ne1, ne0): a weight is (outputs, inputs).
    embd = rand(n_vocab, n_embd)
    embd[:, 0] = 1.0
    w.add_tensor("token_embd.weight", embd)
    for i in range(a.layers):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(p + "attn_q.weight", rand(n_embd, n_embd))
        w.add_tensor(p + "attn_k.weight", rand(n_kv, n_embd))
        w.add_tensor(p + "attn_v.weight", rand(n_kv, n_embd))
        out = rand(n_embd, n_embd)
        out[0, :] = 0.0
        w.add_tensor(p + "attn_output.weight", out)
        w.add_tensor(p + "ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(p + "ffn_gate.weight", rand(n_ff, n_embd))
        w.add_tensor(p + "ffn_up.weight", rand(n_ff, n_embd))
        down = rand(n_embd, n_ff)
        down[0, :] = 0.0
        w.add_tensor(p + "ffn_down.weight", down)
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    head = rand(n_vocab, n_embd, std=1.0)
    head[:, 0] = 0.0
    for i, t in enumerate(types):
        if t != int(gguf.TokenType.NORMAL):
            head[i, 0] = -4.0
    w.add_tensor("output.weight", head)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
