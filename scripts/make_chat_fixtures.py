#!/usr/bin/env python3
"""Writes the chat-template fixtures in tests/data/chat/: one directory per
family, holding small tokenizer files with the family's special tokens and
the config files airllm-run picks the template from, and chat.json with
conversations and the prompt ids the family's own code gives them.
tests/test_chat.c checks that runner/rt_chat.c builds the same ids.

    /work/venv-torch/bin/python scripts/make_chat_fixtures.py REF_DIR [--train]

REF_DIR holds each family's published Python files (not committed here: they
are the families' code, under their licences), one folder per family, taken
from the Hugging Face model repositories:

  qwen/       tokenization_qwen.py, qwen_generation_utils.py  (Qwen/Qwen-7B-Chat)
  chatglm3/   tokenization_chatglm.py                         (THUDM/chatglm3-6b)
  chatglm2/   tokenization_chatglm.py                         (THUDM/chatglm2-6b)
  baichuan/   tokenization_baichuan.py, generation_utils.py   (baichuan-inc/Baichuan2-7B-Chat)
  internlm/   tokenization_internlm.py, modeling_internlm.py,
              configuration_internlm.py                       (internlm/internlm-chat-7b)
  internlm2/  tokenization_internlm2.py, modeling_internlm2.py,
              configuration_internlm2.py                      (internlm/internlm2-chat-7b)

What each reference is:
  qwen       qwen_generation_utils.make_context(tok, query, history, system)
             with chat()'s default system "You are a helpful assistant."; the
             tiny ranks file's specials start after its ranks (the real file's
             151643 ranks make SPECIAL_START_ID the same rule)
  chatglm3   ChatGLMTokenizer.build_chat_input(query, history) (with the
             [gMASK] sop prefix batch_encode_plus adds)
  chatglm2   ChatGLMTokenizer.build_prompt(query, history), then tokenizer([prompt])
  baichuan   generation_utils.build_chat_input(model, tok, messages) with
             generation_config user_token_id 195 / assistant_token_id 196
  internlm   InternLMForCausalLM.build_inputs(tok, query, history)
  internlm2  InternLM2ForCausalLM.build_inputs(tok, query, history,
             meta_instruction) with chat()'s default meta_instruction
  chatml     transformers' apply_chat_template (SmolLM2's template, with its
             built-in system prompt) on tests/data/tokenizer/qwen2-synth
  llama2     apply_chat_template with Llama 2 chat's template on stories260K's
             tokenizer.json

--train retrains the InternLM tokenizer.model (sentencepiece, with the
<|User|> <eoh> <|Bot|> <eoa> and [UNUSED_TOKEN_145/146] pieces).
"""
import importlib
import inspect
import json
import os
import shutil
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "tests", "data", "chat")
TOKF = os.path.join(ROOT, "tests", "data", "tokenizer", "files")
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "models", "stories260K")

SMOL_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}")
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}")

U1 = "Hello! How are you today?"
A1 = "I am fine, thank you. 我很好！"
U2 = "What is 2+2?\nAnswer  in one word, please."
CONVS = [
    [{"role": "user", "content": U1}],
    [{"role": "user", "content": U1}, {"role": "assistant", "content": A1},
     {"role": "user", "content": U2}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": U1}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": U1},
     {"role": "assistant", "content": A1}, {"role": "user", "content": U2}],
    # special-token text inside a message
    [{"role": "user", "content": "say <|im_end|> or </s> or <eoa> please <|Sys|>"}],
]
NO_SYSTEM = {"internlm", "chatglm2"}


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def load_module(ref, family, name):
    """family's file name.py from REF_DIR/family as part of a package, so that
    its relative imports (configuration_*) work."""
    pkg = "ref_" + family
    if os.path.join(ref, family) not in sys.path:
        sys.path.append(os.path.join(ref, family))  # some import their config absolutely
    if pkg not in sys.modules:
        m = types.ModuleType(pkg)
        m.__path__ = [os.path.join(ref, family)]
        sys.modules[pkg] = m
    return importlib.import_module(pkg + "." + name)


def pairs(conv):
    """(system, [(user, assistant)...], query) of a conversation."""
    sys_ = conv[0]["content"] if conv[0]["role"] == "system" else None
    msgs = conv[1:] if sys_ is not None else conv
    hist = [(msgs[i]["content"], msgs[i + 1]["content"]) for i in range(0, len(msgs) - 1, 2)]
    return sys_, hist, msgs[-1]["content"]


def train_internlm_model():
    import sentencepiece as spm
    sys.path.insert(0, HERE)
    from make_spm_fixtures import corpus
    d = os.path.join(OUT, "internlm")
    txt = os.path.join(d, ".corpus.txt")
    with open(txt, "w") as f:
        f.write("\n".join(corpus()) + "\n")
    spm.SentencePieceTrainer.train(
        input=txt, model_prefix=os.path.join(d, "tokenizer"), model_type="bpe", vocab_size=600,
        normalization_rule_name="identity", character_coverage=0.9995, minloglevel=2,
        num_threads=1, byte_fallback=True, add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        user_defined_symbols=["<|User|>", "<eoh>", "<|Bot|>", "<eoa>", "[UNUSED_TOKEN_145]",
                              "[UNUSED_TOKEN_146]"])
    os.remove(txt)
    os.remove(os.path.join(d, "tokenizer.vocab"))


def setup_dirs(train):
    os.makedirs(OUT, exist_ok=True)
    cfg = {
        "qwen": ({"model_type": "qwen", "architectures": ["QWenLMHeadModel"]},
                 {"tokenizer_class": "QWenTokenizer"}, None),
        "chatglm3": ({"model_type": "chatglm", "_name_or_path": "THUDM/chatglm3-6b"},
                     {"tokenizer_class": "ChatGLMTokenizer", "name_or_path": "THUDM/chatglm3-6b"},
                     None),
        "chatglm2": ({"model_type": "chatglm", "_name_or_path": "THUDM/chatglm2-6b"},
                     {"tokenizer_class": "ChatGLMTokenizer", "name_or_path": "THUDM/chatglm2-6b"},
                     None),
        "baichuan": ({"model_type": "baichuan", "model_max_length": 4096},
                     {"tokenizer_class": "BaichuanTokenizer", "add_bos_token": False,
                      "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
                      "unk_token": "<unk>"},
                     {"bos_token_id": 1, "eos_token_id": 2, "user_token_id": 195,
                      "assistant_token_id": 196, "max_new_tokens": 2048}),
        "internlm": ({"model_type": "internlm"},
                     {"tokenizer_class": "InternLMTokenizer", "add_bos_token": True,
                      "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
                     {"bos_token_id": 1, "eos_token_id": 2}),
        "internlm2": ({"model_type": "internlm2"}, None, {"bos_token_id": 1, "eos_token_id": 2}),
        "chatml": ({"model_type": "llama"},
                   {"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": False,
                    "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
                    "chat_template": SMOL_TEMPLATE}, None),
        "llama2": ({"model_type": "llama"},
                   {"tokenizer_class": "LlamaTokenizerFast", "add_bos_token": True,
                    "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                    "chat_template": LLAMA2_TEMPLATE}, None),
    }
    for fam in cfg:
        os.makedirs(os.path.join(OUT, fam), exist_ok=True)
    if train or not os.path.exists(os.path.join(OUT, "internlm", "tokenizer.model")):
        train_internlm_model()
    shutil.copy(os.path.join(TOKF, "tiny.tiktoken"), os.path.join(OUT, "qwen", "qwen.tiktoken"))
    for fam in ("chatglm3", "chatglm2", "baichuan"):
        shutil.copy(os.path.join(TOKF, "spm-fallback.model"),
                    os.path.join(OUT, fam, "tokenizer.model"))
    shutil.copy(os.path.join(OUT, "internlm", "tokenizer.model"),
                os.path.join(OUT, "internlm2", "tokenizer.model"))
    # merges as "a b" strings, which every tokenizers version reads (byte-level
    # tokens hold no spaces)
    tj = json.load(open(os.path.join(ROOT, "tests", "data", "tokenizer",
                                     "qwen2-synth.tokenizer.json")))
    tj["model"]["merges"] = [m if isinstance(m, str) else " ".join(m)
                             for m in tj["model"]["merges"]]
    with open(os.path.join(OUT, "chatml", "tokenizer.json"), "w") as f:
        json.dump(tj, f, ensure_ascii=False)
    shutil.copy(os.path.join(SHARED, "tokenizer.json"), os.path.join(OUT, "llama2", "tokenizer.json"))
    # InternLM2 renames two pieces, as the real checkpoint renames
    # [UNUSED_TOKEN_145/146] (ids 92542/92543) to <|im_end|> / <|im_start|>.
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(OUT, "internlm2", "tokenizer.model"))
    dec = {}
    for i, name in ((0, "<unk>"), (1, "<s>"), (2, "</s>")):
        dec[str(i)] = {"content": name, "lstrip": False, "normalized": False, "rstrip": False,
                       "single_word": False, "special": True}
    for old, new in (("[UNUSED_TOKEN_145]", "<|im_end|>"), ("[UNUSED_TOKEN_146]", "<|im_start|>")):
        dec[str(sp.piece_to_id(old))] = {"content": new, "lstrip": False, "normalized": False,
                                         "rstrip": False, "single_word": False, "special": True}
    i2 = {"tokenizer_class": "InternLM2Tokenizer", "add_bos_token": True, "add_eos_token": False,
          "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
          "added_tokens_decoder": dec}
    cfg["internlm2"] = (cfg["internlm2"][0], i2, cfg["internlm2"][2])
    # InternLM v1 also lists a token in added_tokens.json (the older form
    # of added_tokens_decoder), past the model's pieces
    write_json(os.path.join(OUT, "internlm", "added_tokens.json"), {"<|Sys|>": sp.get_piece_size()})
    for fam, (c, t, g) in cfg.items():
        write_json(os.path.join(OUT, fam, "config.json"), c)
        if t:
            write_json(os.path.join(OUT, fam, "tokenizer_config.json"), t)
        if g:
            write_json(os.path.join(OUT, fam, "generation_config.json"), g)


def early_sp(cls):
    """cls with its SentencePiece model loaded before PreTrainedTokenizer's
    __init__, which asks for the vocab in transformers >= 4.34 (the family's
    code, written for older ones, loads it after)."""
    import sentencepiece as spm

    class Early(cls):
        def __init__(self, vocab_file, *a, **kw):
            self.sp_model = spm.SentencePieceProcessor(model_file=vocab_file)
            self.vocab_file = vocab_file
            super().__init__(vocab_file, *a, **kw)
    return Early


def ids_list(x):
    if hasattr(x, "tolist"):
        x = x.tolist()
    while isinstance(x, list) and x and isinstance(x[0], list):
        x = x[0]
    return [int(i) for i in x]


def references(ref):
    d = lambda fam: os.path.join(OUT, fam)
    refs = {}
    # Qwen: the real file has 151643 ranks, so specials start there
    qt = load_module(ref, "qwen", "tokenization_qwen")
    ranks = qt._load_tiktoken_bpe(os.path.join(d("qwen"), "qwen.tiktoken"))
    qt.SPECIAL_TOKENS = tuple(enumerate((qt.ENDOFTEXT, qt.IMSTART, qt.IMEND) + qt.EXTRAS,
                                        start=len(ranks)))
    qtok = qt.QWenTokenizer(os.path.join(d("qwen"), "qwen.tiktoken"))
    qg = load_module(ref, "qwen", "qwen_generation_utils")

    def qwen(conv):
        s, h, q = pairs(conv)
        return qg.make_context(qtok, q, h, system=s if s is not None else
                               "You are a helpful assistant.")[1]
    refs["qwen"] = qwen

    g3 = load_module(ref, "chatglm3", "tokenization_chatglm")
    t3 = g3.ChatGLMTokenizer(os.path.join(d("chatglm3"), "tokenizer.model"))

    def chatglm3(conv):
        hist = [dict(m, metadata="") if m["role"] == "assistant" else dict(m) for m in conv[:-1]]
        return ids_list(t3.build_chat_input(conv[-1]["content"], history=hist)["input_ids"])
    refs["chatglm3"] = chatglm3

    g2 = load_module(ref, "chatglm2", "tokenization_chatglm")
    t2 = g2.ChatGLMTokenizer(os.path.join(d("chatglm2"), "tokenizer.model"))

    def chatglm2(conv):
        _, h, q = pairs(conv)
        return ids_list(t2([t2.build_prompt(q, h)])["input_ids"])
    refs["chatglm2"] = chatglm2

    bt = load_module(ref, "baichuan", "tokenization_baichuan")
    bg = load_module(ref, "baichuan", "generation_utils")
    btok = bt.BaichuanTokenizer.from_pretrained(d("baichuan"))
    bmodel = types.SimpleNamespace(
        generation_config=types.SimpleNamespace(user_token_id=195, assistant_token_id=196,
                                                max_new_tokens=2048),
        config=types.SimpleNamespace(model_max_length=4096), device="cpu")

    def baichuan(conv):
        return ids_list(bg.build_chat_input(bmodel, btok, conv))
    refs["baichuan"] = baichuan

    it = load_module(ref, "internlm", "tokenization_internlm")
    im = load_module(ref, "internlm", "modeling_internlm")
    itok = early_sp(it.InternLMTokenizer).from_pretrained(d("internlm"))

    def internlm(conv):
        _, h, q = pairs(conv)
        return ids_list(im.InternLMForCausalLM.build_inputs(None, itok, q, h)["input_ids"])
    refs["internlm"] = internlm

    i2t = load_module(ref, "internlm2", "tokenization_internlm2")
    i2m = load_module(ref, "internlm2", "modeling_internlm2")
    i2tok = early_sp(i2t.InternLM2Tokenizer).from_pretrained(d("internlm2"))
    meta = inspect.signature(i2m.InternLM2ForCausalLM.chat).parameters["meta_instruction"].default

    def internlm2(conv):
        s, h, q = pairs(conv)
        return ids_list(i2m.InternLM2ForCausalLM.build_inputs(
            None, i2tok, q, h, meta_instruction=s if s is not None else meta)["input_ids"])
    refs["internlm2"] = internlm2

    from transformers import PreTrainedTokenizerFast
    for fam in ("chatml", "llama2"):
        cfg = json.load(open(os.path.join(d(fam), "tokenizer_config.json")))
        tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(d(fam), "tokenizer.json"),
                                      bos_token=cfg["bos_token"], eos_token=cfg["eos_token"])
        tok.chat_template = cfg["chat_template"]
        refs[fam] = (lambda t: lambda conv: ids_list(
            t.apply_chat_template(conv, add_generation_prompt=True, tokenize=True)))(tok)
    return refs


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    setup_dirs("--train" in sys.argv)
    refs = references(sys.argv[1])
    cases = []
    for fam, fn in refs.items():
        for conv in CONVS:
            if fam in NO_SYSTEM and conv[0]["role"] == "system":
                continue
            cases.append({"dir": fam, "messages": conv, "ids": fn(conv)})
            print(fam, len(conv), "messages:", len(cases[-1]["ids"]), "ids")
    write_json(os.path.join(OUT, "chat.json"), {"cases": cases})


if __name__ == "__main__":
    main()
