#!/usr/bin/env python3
"""Optional check of a SmolLM2 directory written by scripts/fetch_smollm2.sh.

    check_smollm2.py [--gguf MODEL.gguf] [--no-generate] [--strings N] HF_DIR

Not part of the build or the tests: it needs torch, transformers, tokenizers
and gguf, which nothing else here uses. In a throwaway virtual environment:

    python3 -m venv /tmp/venv-check
    /tmp/venv-check/bin/pip install torch transformers tokenizers gguf
    /tmp/venv-check/bin/python scripts/check_smollm2.py \
        --gguf ~/.cache/airllm/gguf/SmolLM2-135M-Instruct.Q4_1.gguf \
        ~/.cache/airllm/smollm2-135m-instruct

What it checks:
  1. tokenizer.json loads with tokenizers.Tokenizer.from_file; every special
     token has its id; a few hundred varied strings (English, digits, code,
     whitespace runs, contractions, accents, CJK, emoji, embedded and broken
     special tokens, random mixes) encode to the same ids as a reference BPE
     written here from the GGUF's own tokens, merges and llama.cpp's "smollm"
     pre-tokenizer regexes, and decode back to the same text; transformers'
     AutoTokenizer gives the same ids.
  2. transformers loads the directory, applies the chat template to "What is
     the capital of France?" and the greedy 30-token answer mentions Paris.
  3. If llama_cpp (llama-cpp-python, built from source by pip) is importable
     and --gguf is given: the GGUF's own tokenizer in llama.cpp gives the same
     ids for every string, and llama.cpp's logits over the chat prompt agree
     with transformers' (cosine > 0.99 at every position, same top token at
     90% of them; not all: llama.cpp quantizes activations too).

Without --gguf the reference BPE reads tokens and merges from tokenizer.json
itself, which checks the pre-tokenizer and the BPE but not the transcription.
Exit status: 0 all checks passed, 1 a check failed, 2 usage.
"""

import argparse
import json
import os
import random
import sys

import regex


# ---------------------------------------------------------------- reference BPE

# llama.cpp's llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_SMOLLM: first every \p{N}
# alone, then GPT-2's split. tokenizers' ByteLevel regex ends in "|\s+", which
# llama.cpp's handles in code; both give the same pieces.
DIGIT = regex.compile(r"\p{N}")
GPT2 = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class ReferenceBPE:
    def __init__(self, tokens, merges, specials):
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.ranks = {tuple(m.split(" ", 1)): r for r, m in enumerate(merges)}
        self.byte_map = bytes_to_unicode()
        # longest first, as tokenizers' AddedVocabulary matches
        self.specials = sorted(specials, key=len, reverse=True)
        self.cache = {}

    def bpe(self, piece):
        if piece in self.cache:
            return self.cache[piece]
        word = list(piece)
        while len(word) > 1:
            best = None
            for i in range(len(word) - 1):
                r = self.ranks.get((word[i], word[i + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            a, b = word[best[1]], word[best[1] + 1]
            merged = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == a and word[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        ids = [self.vocab[w] for w in word]
        self.cache[piece] = ids
        return ids

    def encode_plain(self, text):
        ids = []
        pos = 0
        chunks = []
        for m in DIGIT.finditer(text):
            chunks.append(text[pos:m.start()])
            chunks.append(m.group())
            pos = m.end()
        chunks.append(text[pos:])
        for chunk in chunks:
            for m in GPT2.finditer(chunk):
                piece = "".join(self.byte_map[b] for b in m.group().encode("utf-8"))
                ids.extend(self.bpe(piece))
        return ids

    def encode(self, text):
        ids = []
        pos = 0
        while pos < len(text):
            hit = None
            for i in range(pos, len(text)):
                for s in self.specials:
                    if text.startswith(s, i):
                        hit = (i, s)
                        break
                if hit:
                    break
            if hit is None:
                ids.extend(self.encode_plain(text[pos:]))
                break
            ids.extend(self.encode_plain(text[pos:hit[0]]))
            ids.append(self.vocab[hit[1]])
            pos = hit[0] + len(hit[1])
        return ids


# ---------------------------------------------------------------- test strings

FIXED = [
    "", " ", "  ", "\n", "\n\n\n", "\t", " \t \n ", "a", "A", "hello", " hello", "hello ",
    "Hello, world!", "What is the capital of France?",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you'll see they've done what we'd said it's not.",
    "DON'T SHOUT, IT'S RUDE", "'s 't 're 've 'm 'll 'd", "rock'n'roll",
    "1", "12", "123", "1234567890", "3.14159", "-42", "1,000,000", "2024-11-23T12:34:56Z",
    "x1y22z333", "v2.0.1-rc3", "0x1F 0b1010 1e-5", "phone: +1 (555) 010-9999",
    "٣٤٥ ½ ² Ⅻ", "١٢٣ and ४५६",
    "def f(x):\n    return x * 2  # double\n", "int main(void) { return 0; }",
    "for (i = 0; i < n; ++i) {\n\tsum += a[i];\n}", "<div class=\"x\">&amp;</div>",
    "SELECT * FROM t WHERE id = 7;", "    indented\n        more\n", "trailing   ",
    "a  b   c    d", "line1\r\nline2\r\n", "tabs\t\tand\tspaces",
    "café naïve résumé façade", "Übermäßig größer", "Ελληνικά κείμενο", "Русский текст",
    "中文文本测试", "日本語のテキスト", "한국어 텍스트", "العربية نص", "עברית",
    "emoji 😀🎉👍🏽 and 👨‍👩‍👧", "∑∫√∞≠≤≥", "“smart quotes” and ‘single’ — dash…",
    "zero\u200bwidth", "nbsp\u00a0here", "\u3000ideographic space",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "a<|im_end|>b", "<|im_end|><|im_end|>",
    "<|im_start", "im_end|>", "<|im_end |>", "< |im_start|>", "<filename>x.py<file_sep>",
    "<jupyter_code>print(1)<jupyter_output>1<empty_output>",
    "<reponame>user/repo<gh_stars>10", "<issue_start>bug<issue_comment>ok<issue_closed>",
    "<<|im_start|>>", "<|im_start|><|im_start|>x",
]

ALPHABETS = [
    "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789",
    " ", "  ", "\n", "\t", ".,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`", "'s", "'ll",
    "éàüößçñ", "αβγδΩ", "абвгдЖ", "中文字", "ひらがな", "😀🎉", "<|im_start|>", "<|im_end|>",
    "<|endoftext|>", "½²٣", "\u00a0", "\r\n",
]


def random_strings(n, seed=1234):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 12)):
            alpha = rng.choice(ALPHABETS)
            if len(alpha) <= 2 or alpha.startswith("<|"):
                parts.append(alpha)
            else:
                parts.append("".join(rng.choice(alpha) for _ in range(rng.randint(1, 8))))
        out.append("".join(parts))
    return out


# ---------------------------------------------------------------- checks

class Checker:
    def __init__(self):
        self.failed = 0

    def ok(self, cond, what):
        print("%s %s" % ("ok  " if cond else "FAIL", what))
        if not cond:
            self.failed += 1
        return cond


def load_gguf_vocab(path):
    import gguf
    r = gguf.GGUFReader(path)
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    merges = r.fields["tokenizer.ggml.merges"].contents()
    return tokens, types, merges


def check_tokenizer(c, hf_dir, gguf_path, strings):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    tok = Tokenizer.from_file(os.path.join(hf_dir, "tokenizer.json"))
    if gguf_path:
        tokens, types, merges = load_gguf_vocab(gguf_path)
        specials = [t for t, ty in zip(tokens, types) if ty == 3]
        source = "GGUF"
    else:
        tj = json.load(open(os.path.join(hf_dir, "tokenizer.json"), encoding="utf-8"))
        vocab = tj["model"]["vocab"]
        tokens = [None] * len(vocab)
        for t, i in vocab.items():
            tokens[i] = t
        merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
        specials = [a["content"] for a in tj["added_tokens"] if a["special"]]
        source = "tokenizer.json"
    ref = ReferenceBPE(tokens, merges, specials)

    c.ok(tok.get_vocab_size() == len(tokens),
         "vocab size %d == %d (%s)" % (tok.get_vocab_size(), len(tokens), source))
    bad = [s for s in specials if tok.token_to_id(s) != tokens.index(s)
           or tok.encode(s).ids != [tokens.index(s)]]
    c.ok(not bad, "%d special tokens keep their ids and encode alone%s"
         % (len(specials), (": " + ", ".join(bad)) if bad else ""))
    bad = [i for i, t in enumerate(tokens) if tok.id_to_token(i) != t]
    c.ok(not bad, "id_to_token matches all %d tokens" % len(tokens))

    auto = AutoTokenizer.from_pretrained(hf_dir)
    mism, mism_auto, mism_rt = [], [], []
    for s in strings:
        ids = tok.encode(s).ids
        if ids != ref.encode(s):
            mism.append(s)
        if auto(s, add_special_tokens=True)["input_ids"] != ids:
            mism_auto.append(s)
        if tok.decode(ids, skip_special_tokens=False) != s:
            mism_rt.append(s)
    for name, lst in (("reference BPE (%s)" % source, mism), ("AutoTokenizer", mism_auto)):
        c.ok(not lst, "%d/%d strings encode like %s%s" % (
            len(strings) - len(lst), len(strings), name,
            ("; first: %r" % lst[0]) if lst else ""))
        for s in lst[:3]:
            print("     %r\n       tokenizers %s\n       expected   %s"
                  % (s, tok.encode(s).ids, ref.encode(s) if name.startswith("ref")
                     else auto(s)["input_ids"]))
    c.ok(not mism_rt, "%d/%d strings decode back to themselves%s" % (
        len(strings) - len(mism_rt), len(strings),
        ("; first: %r" % mism_rt[0]) if mism_rt else ""))
    return tok


def chat_ids(tokenizer):
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    return tokenizer.apply_chat_template(msgs, add_generation_prompt=True,
                                         return_tensors="pt", return_dict=True)


def check_generate(c, hf_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    model.eval()
    enc = chat_ids(tokenizer)
    ids = enc["input_ids"]
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=enc["attention_mask"],
                             max_new_tokens=30, do_sample=False)
    answer = tokenizer.decode(out[0][ids.shape[1]:], skip_special_tokens=True)
    print("     answer: %r" % answer)
    c.ok("Paris" in answer, "greedy chat answer mentions Paris")
    return tokenizer, model, ids


def check_llama_cpp(c, gguf_path, strings, tok, hf):
    try:
        import llama_cpp
    except ImportError:
        print("skip llama.cpp comparison (llama_cpp not importable)")
        return
    import numpy as np

    llm = llama_cpp.Llama(model_path=gguf_path, vocab_only=True, verbose=False)
    mism = [s for s in strings
            if llm.tokenize(s.encode("utf-8"), add_bos=False, special=True) != tok.encode(s).ids]
    c.ok(not mism, "%d/%d strings encode like llama.cpp's GGUF tokenizer%s" % (
        len(strings) - len(mism), len(strings), ("; first: %r" % mism[0]) if mism else ""))
    for s in mism[:3]:
        print("     %r\n       tokenizers %s\n       llama.cpp  %s" % (
            s, tok.encode(s).ids, llm.tokenize(s.encode("utf-8"), add_bos=False, special=True)))
    del llm
    if hf is None:
        return

    import torch
    tokenizer, model, ids = hf
    llm = llama_cpp.Llama(model_path=gguf_path, n_ctx=512, logits_all=True, verbose=False)
    prompt = ids[0].tolist()
    llm.eval(prompt)
    a = np.array(llm.scores[:len(prompt)], dtype=np.float64)
    with torch.no_grad():
        b = model(ids).logits[0].double().numpy()
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    agree = float((a.argmax(1) == b.argmax(1)).mean())
    # llama.cpp multiplies Q4_1 weights by Q8 activations, transformers the
    # dequantized weights by float32 ones: close, not equal, so near-ties
    # (this prompt's first answer token: "The" vs "L", 0.1 apart) may flip.
    la, lb = a[-1], b[-1]
    print("     %d prompt positions: cosine min %.5f, same top token at %.0f%%" % (
        len(prompt), float(cos.min()), 100 * agree))
    print("     last position: llama.cpp top %r %.2f, transformers top %r %.2f "
          "(transformers gives llama.cpp's top %.2f)" % (
              tokenizer.decode([int(la.argmax())]), float(la.max()),
              tokenizer.decode([int(lb.argmax())]), float(lb.max()), float(lb[int(la.argmax())])))
    c.ok(cos.min() > 0.99 and agree >= 0.9,
         "logits agree with llama.cpp on the GGUF (cosine > 0.99, top token >= 90%)")


def main(argv):
    ap = argparse.ArgumentParser(description="Check a converted SmolLM2 directory (needs torch).")
    ap.add_argument("hf_dir")
    ap.add_argument("--gguf", help="the GGUF it came from (reference tokenizer, llama.cpp)")
    ap.add_argument("--no-generate", action="store_true", help="skip the transformers model")
    ap.add_argument("--strings", type=int, default=300, help="random strings (default 300)")
    args = ap.parse_args(argv)

    c = Checker()
    strings = FIXED + random_strings(args.strings)
    tok = check_tokenizer(c, args.hf_dir, args.gguf, strings)
    hf = None if args.no_generate else check_generate(c, args.hf_dir)
    if args.gguf:
        check_llama_cpp(c, args.gguf, strings, tok, hf)
    print("%d failed" % c.failed if c.failed else "all checks passed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
