#!/usr/bin/env python3
"""Writes the SentencePiece and tiktoken test fixtures in tests/data/tokenizer/files/:
tiny tokenizer.model files trained with the `sentencepiece` trainer, a tiny
tiktoken ranks file (a byte-level BPE trained here, by hand), and for each a
few hundred strings with the ids the reference library gives them, and id
sequences with the text it decodes them to. tests/test_spm.c checks that
lib/airllm_spm.c and lib/airllm_tiktoken.c give the same.

Needs the PyPI packages sentencepiece, tiktoken (and its dependency regex):

    pip install sentencepiece tiktoken
    python3 scripts/make_spm_fixtures.py [--train]

--train retrains the models and the ranks file; without it the committed
ones are used, so that only the reference ids are rewritten.

Models (all identity normalization, as ChatGLM / Baichuan / InternLM ship):
  spm-fallback.model  BPE, byte_fallback, add_dummy_prefix, extra whitespace
                      kept (the Llama / InternLM layout), user-defined and
                      control symbols
  spm-plain.model     BPE, no byte fallback (unknown characters -> <unk>), no
                      dummy prefix, remove_extra_whitespaces
  spm-unused.model    spm-plain with some merged pieces marked UNUSED (they
                      are re-split into the pieces they were merged from)
  spm-noescape.model  spm-fallback with escape_whitespaces off
  spm-unigram.model   UNIGRAM (Viterbi), byte_fallback, sentencepiece's defaults
                      for the whitespace flags
  spm-unigram-plain.model  UNIGRAM without byte fallback
  tiny.tiktoken       byte-level BPE ranks, Qwen v1's split regex and special
                      tokens (<|endoftext|>, <|im_start|>, <|im_end|>,
                      <|extra_0..204|> from the first id after the ranks)

Fixture NAME.json: {"model": FILE, "kind": "spm"|"tiktoken", "version": ...,
  "cases": [{"hex": text as UTF-8 hex, "ids": [...], "dec": decode(ids) hex,
             (tiktoken) "nfc_ids": ids of the NFC-normalized text, as Qwen's
             tokenizer encodes}],
  "decodes": [{"ids": [...], "hex": decode(ids) as hex}]}
"""
import base64
import collections
import json
import os
import random
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "tests", "data", "tokenizer", "files")

QWEN_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
            r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + \
    [f"<|extra_{i}|>" for i in range(205)]


def test_strings(specials):
    s = [
        "", " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n\n", " \n ", "a", "A", "hello",
        "Hello world", "Hello, world!", " leading space", "trailing space ", "  two leading",
        "two trailing  ", "a  b   c    d", "tab\tseparated\tvalues",
        "line one\nline two\r\nline three", "\n\nparagraph\n\n\nbreaks\n",
        "mixed \t\n whitespace \u00a0 nbsp", "ideographic\u3000space", "em\u2003space",
        "Once upon a time, there was a little girl named Lily.",
        "The quick brown fox jumps over the lazy dog.",
        "It's, I'm, you're, we've, they'll, he'd, don't",
        "IT'S, I'M, YOU'RE, WE'VE, THEY'LL, HE'D, DON'T", "'s 't 're 've 'm 'll 'd",
        "it'\u017f long s", "x'\u212a kelvin", "''s '''",
        "1", "12", "123", "1234", "12345", "1234567890", "3.14159", "1,000,000", "-42",
        "year 2024 and 1999", "\u0661\u0662\u0663 arabic-indic digits", "\u2160\u2161 roman",
        "\u00bd \u00be fractions", "x\u00b2 + y\u00b2", "!!!", "...", "?!?!", "***bold***",
        "{\"json\": [1, 2, 3]}", "foo@bar.com", "https://example.com/path?q=1&r=2",
        "~`!@#$%^&*()_+-={}|[]\\:\";'<>?,./", "def f(x):\n    return x * 2\n",
        "    indented code", "\tif (a) {\n\t\tb();\n\t}",
        "caf\u00e9", "cafe\u0301", "na\u00efve r\u00e9sum\u00e9", "\u00c5ngstr\u00f6m",
        "\u212b angstrom", "\u1e9b\u0323 long s dot", "e\u0323\u0302 reorder",
        "Stra\u00dfe", "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!",
        "\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5", "\u05e9\u05dc\u05d5\u05dd",
        "\u0645\u0631\u062d\u0628\u0627", "\u0928\u092e\u0938\u094d\u0924\u0947",
        "\u4f60\u597d\uff0c\u4e16\u754c\uff01", "\u4eca\u5929\u5929\u6c14\u5f88\u597d\u3002",
        "\u4e2d\u56fd\u4eba\u6c11", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
        "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8", "\u1100\u1161\u11a8 jamo",
        "\U0001F600", "\U0001F916 robot", "\U0001F44D\U0001F3FD",
        "\U0001F468\u200d\U0001F469\u200d\U0001F467", "\u2764\ufe0f",
        "emoji\U0001F525in\U0001F525middle", "\U00010348 gothic", "\U00020000 cjk ext b",
        "zero\u200bwidth", "soft\u00adhyphen", "\ufeffBOM", "\ufffd replacement",
        "bell\u0007 escape\u001b[0m", "del\u007f", "\u0085next line", "\U0010FFFF max",
        "\ue000 private use", "<0x41>", "<0xE4><0xB8>", "\u2581already escaped",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "the the the the the the the",
        "ab" * 60, " " * 40 + "x", "x" + "\n" * 20, "9" * 48,
        "She said: \u201cthe cat\u2019s ball\u201d \u2014 and ran.",
    ]
    for sp in specials:
        s += [sp, "x" + sp + "y", " " + sp + " ", sp + sp, "a " + sp + "\nb"]
    s.append(("Lily wanted to play with the ball, but it was too high. She asked her "
              "mom for help. \u4f60\u597d! \"Can you get it?\"\n") * 6)
    rng = random.Random(1234)
    alphabet = (list("abcXYZ019 '\t\n\r.,!?-_") + ["'s", "'T", "'ll", " ", "  ", "\u00e9",
                "e\u0301", "\u4e2d", "\u597d", "\U0001F600", "\u0662", "\u00a0", "\u3000",
                "\u2581", "the", " the", "\u017f"] + list(specials))
    for _ in range(220):
        n = rng.randint(1, 24)
        s.append("".join(rng.choice(alphabet) for _ in range(n)))
    out, seen = [], set()
    for x in s:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def corpus():
    words = ("the of and to in is was for on that with as it at by from he she they little "
             "girl boy dog cat ball play happy sad big small tree house mom dad said asked "
             "wanted looked saw went came ran jumped laughed friend day time").split()
    cjk = ["\u4f60\u597d\uff0c\u4e16\u754c\uff01", "\u4eca\u5929\u5929\u6c14\u5f88\u597d\u3002",
           "\u6211\u4eec\u662f\u670b\u53cb", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
           "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!", "caf\u00e9 na\u00efve",
           "def f(x):\n    return x * 2", "\U0001F600 \U0001F525 fun"]
    rng = random.Random(7)
    lines = []
    for _ in range(1500):
        n = rng.randint(4, 16)
        w = [rng.choice(words) for _ in range(n)]
        w[0] = w[0].capitalize()
        line = " ".join(w) + rng.choice([".", "!", "?", ",", "..."])
        if rng.random() < 0.3:
            line += " " + str(rng.randint(0, 100000))
        if rng.random() < 0.2:
            line = line.replace(" it ", " it's ").replace(" they ", " they'll ")
        if rng.random() < 0.15:
            line += " " + rng.choice(cjk)
        lines.append(line)
    return lines


# ---------------------------------------------------------------------------
# SentencePiece


def train_spm():
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as mp
    txt = os.path.join(OUT, ".spm_corpus.txt")
    with open(txt, "w") as f:
        f.write("\n".join(corpus()) + "\n")
    common = dict(input=txt, model_type="bpe", normalization_rule_name="identity",
                  character_coverage=0.9995, minloglevel=2, num_threads=1,
                  user_defined_symbols=["<|user|>", "<|assistant|>", "<sep>"],
                  control_symbols=["<ctl>"])
    spm.SentencePieceTrainer.train(model_prefix=os.path.join(OUT, "spm-fallback"),
                                   vocab_size=700, byte_fallback=True, add_dummy_prefix=True,
                                   remove_extra_whitespaces=False, **common)
    spm.SentencePieceTrainer.train(model_prefix=os.path.join(OUT, "spm-plain"),
                                   vocab_size=400, byte_fallback=False, add_dummy_prefix=False,
                                   remove_extra_whitespaces=True, **common)
    uni = dict(common, model_type="unigram")
    spm.SentencePieceTrainer.train(model_prefix=os.path.join(OUT, "spm-unigram"),
                                   vocab_size=500, byte_fallback=True, **uni)
    spm.SentencePieceTrainer.train(model_prefix=os.path.join(OUT, "spm-unigram-plain"),
                                   vocab_size=300, byte_fallback=False,
                                   remove_extra_whitespaces=True, **uni)
    os.remove(txt)
    for n in ("spm-fallback", "spm-plain", "spm-unigram", "spm-unigram-plain"):
        os.remove(os.path.join(OUT, n + ".vocab"))

    def edit(src, dst, fn):
        m = mp.ModelProto()
        with open(os.path.join(OUT, src), "rb") as f:
            m.ParseFromString(f.read())
        fn(m)
        with open(os.path.join(OUT, dst), "wb") as f:
            f.write(m.SerializeToString())

    def unused(m):
        k = 0
        for p in m.pieces:
            if p.type == 1 and len(p.piece) >= 3 and k < 40:
                if hash_piece(p.piece) % 3 == 0:
                    p.type = 5
                    k += 1

    def noescape(m):
        m.normalizer_spec.escape_whitespaces = False

    edit("spm-plain.model", "spm-unused.model", unused)
    edit("spm-fallback.model", "spm-noescape.model", noescape)


def hash_piece(s):
    h = 0
    for b in s.encode():
        h = (h * 31 + b) % 1000003
    return h


def spm_fixture(name, specials):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(OUT, name + ".model"))
    cases = []
    for text in test_strings(specials):
        ids = sp.encode(text)
        cases.append({"hex": text.encode().hex(), "ids": ids,
                      "dec": sp.decode(ids).encode().hex()})
    rng = random.Random(99)
    size = sp.get_piece_size()
    byte_ids = [i for i in range(size) if sp.is_byte(i)]
    decodes = []
    for _ in range(200):
        ids = [rng.randrange(size) for _ in range(rng.randint(1, 12))]
        if byte_ids and rng.random() < 0.7:
            ch = rng.choice(["\u00e9", "\u4e2d", "\U0001F600", "a", " "]).encode()
            if rng.random() < 0.4:
                ch = bytes([rng.choice([0x80, 0xBF, 0xC0, 0xE0, 0xED, 0xF4, 0xFF])]) + \
                    ch[:rng.randint(0, 3)]
            run = [sp.piece_to_id(f"<0x{b:02X}>") for b in ch]
            pos = rng.randint(0, len(ids))
            ids[pos:pos] = run
        decodes.append({"ids": ids, "hex": sp.decode(ids).encode().hex()})
    write(name, {"model": name + ".model", "kind": "spm", "version": spm.__version__,
                 "cases": cases, "decodes": decodes})


# ---------------------------------------------------------------------------
# tiktoken


def train_tiktoken(n_merges=600):
    """Byte-level BPE as tiktoken's ranks encode it: ranks 0-255 are the single
    bytes (printable ASCII first, as in GPT-2's order), then each merge learned
    on the corpus, split by Qwen's regex, gets the next rank."""
    import regex
    order = [b for b in range(256) if 0x21 <= b <= 0x7E] + \
        [b for b in range(256) if not 0x21 <= b <= 0x7E]
    ranks = {bytes([b]): i for i, b in enumerate(order)}
    words = collections.Counter()
    for line in corpus():
        for w in regex.findall(QWEN_PAT, line + "\n"):
            words[w.encode()] += 1
    seqs = {w: [bytes([b]) for b in w] for w in words}
    for _ in range(n_merges):
        pairs = collections.Counter()
        for w, c in words.items():
            s = seqs[w]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        tok = a + b
        if tok in ranks:
            continue
        ranks[tok] = len(ranks)
        for w in words:
            s = seqs[w]
            i, o = 0, []
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    o.append(tok)
                    i += 2
                else:
                    o.append(s[i])
                    i += 1
            seqs[w] = o
    with open(os.path.join(OUT, "tiny.tiktoken"), "w") as f:
        for tok, r in sorted(ranks.items(), key=lambda kv: kv[1]):
            f.write(f"{base64.b64encode(tok).decode()} {r}\n")


def load_ranks(path):
    with open(path, "rb") as f:
        return {base64.b64decode(t): int(r)
                for t, r in (line.split() for line in f.read().splitlines() if line)}


def tiktoken_fixture():
    import tiktoken
    ranks = load_ranks(os.path.join(OUT, "tiny.tiktoken"))
    start = len(ranks)
    specials = {s: start + i for i, s in enumerate(QWEN_SPECIALS)}
    enc = tiktoken.Encoding("tiny-qwen", pat_str=QWEN_PAT, mergeable_ranks=ranks,
                            special_tokens=specials)
    cases = []
    for text in test_strings(QWEN_SPECIALS[:3] + ["<|extra_7|>", "<|extra_204|>"]):
        ids = enc.encode(text, allowed_special="all")
        nfc = enc.encode(unicodedata.normalize("NFC", text), allowed_special="all")
        cases.append({"hex": text.encode().hex(), "ids": ids, "nfc_ids": nfc,
                      "dec": enc.decode(ids, errors="replace").encode().hex()})
    rng = random.Random(5)
    size = start + len(QWEN_SPECIALS)
    decodes = []
    for _ in range(200):
        ids = [rng.randrange(size if rng.random() < 0.1 else start)
               for _ in range(rng.randint(1, 12))]
        decodes.append({"ids": ids, "hex": enc.decode(ids, errors="replace").encode().hex()})
    write("tiny-tiktoken", {"model": "tiny.tiktoken", "kind": "tiktoken",
                            "version": tiktoken.__version__, "special_start": start,
                            "cases": cases, "decodes": decodes})


def write(name, fx):
    path = os.path.join(OUT, name + ".json")
    with open(path, "w") as f:
        json.dump(fx, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", path, len(fx["cases"]), "cases,", len(fx["decodes"]), "decodes")


def main():
    os.makedirs(OUT, exist_ok=True)
    if "--train" in sys.argv:
        train_spm()
        train_tiktoken()
    spm_specials = ["<|user|>", "<|assistant|>", "<sep>", "<ctl>", "<s>", "</s>", "<unk>"]
    for name in ("spm-fallback", "spm-plain", "spm-unused", "spm-noescape", "spm-unigram",
                 "spm-unigram-plain"):
        spm_fixture(name, spm_specials)
    tiktoken_fixture()


if __name__ == "__main__":
    main()
