#!/usr/bin/env python3
"""Helpers of scripts/bench_peers.sh (docs/benchmarks.md, "Against llama.cpp
and AirLLM"); each subcommand runs in the virtual environment that has what
it imports, and prints one line of figures on stdout.

  gguf HF_DIR OUT.gguf f16|bf16     a Llama checkpoint (safetensors, bf16, f16
                                    or f32) as a GGUF, with gguf-py's writer
  quantize IN.gguf OUT.gguf q8_0|q4_0
                                    llama.cpp's own quantizer, through the
                                    llama-cpp-python bindings (llama.cpp's
                                    default tensor mix for the type)
  llama GGUF THREADS MODE ...       llama.cpp timings, see cmd_llama
  airllm HF_DIR SHARDS MODE ...     AirLLM timings, see cmd_airllm
  mlock FREE_BYTES                  lock all but FREE_BYTES of MemAvailable
                                    and sleep until killed

Nothing here is copied from llama.cpp or AirLLM: both are used only through
their installed packages.
"""
import json
import os
import struct
import sys
import time


def die(msg):
    print("bench_peers.py: " + msg, file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------- safetensors
def read_safetensors(hf_dir):
    """name -> (dtype string, shape, numpy memmap of the raw bytes as uint16
    for BF16/F16 or float32 for F32), over every shard of the checkpoint."""
    import numpy as np
    idx = os.path.join(hf_dir, "model.safetensors.index.json")
    if os.path.exists(idx):
        files = sorted(set(json.load(open(idx))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out = {}
    for f in files:
        path = os.path.join(hf_dir, f)
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) != 8:
                die("%s: too short for a safetensors header" % path)
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                die("%s: header length %d past the end of the file" % (path, n))
            meta = json.loads(fh.read(n))
        base = 8 + n
        for name, t in meta.items():
            if name == "__metadata__":
                continue
            a, b = t["data_offsets"]
            if not (0 <= a <= b <= size - base):
                die("%s: tensor %s lies outside the file" % (path, name))
            dt = {"BF16": np.uint16, "F16": np.uint16, "F32": np.float32}.get(t["dtype"])
            if dt is None:
                die("%s: tensor %s has dtype %s (want BF16, F16 or F32)" % (path, name, t["dtype"]))
            count = (b - a) // np.dtype(dt).itemsize
            arr = np.memmap(path, dtype=dt, mode="r", offset=base + a, shape=(count,))
            out[name] = (t["dtype"], tuple(t["shape"]), arr)
    return out


def to_f32(dtype, raw):
    import numpy as np
    if dtype == "F32":
        return np.asarray(raw, dtype=np.float32)
    if dtype == "F16":
        return raw.view(np.float16).astype(np.float32)
    return (raw.astype(np.uint32) << 16).view(np.float32)


def to_bf16(dtype, raw):
    """bf16 bits as uint16; round to nearest even from f32/f16."""
    import numpy as np
    if dtype == "BF16":
        return np.asarray(raw)
    u = to_f32(dtype, raw).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def to_f16(dtype, raw):
    import numpy as np
    if dtype == "F16":
        return np.asarray(raw).view(np.float16)
    return to_f32(dtype, raw).astype(np.float16)


# ---------------------------------------------------------------- gguf
def rope_permute(w, n_head):
    """HF's q/k rows [n_head][2][d/2] (rotate-half pairs) to GGUF llama's
    interleaved pairs [n_head][d/2][2], as llama.cpp's converter expects
    for arch llama; w is (rows, cols), rows = n_head * head_dim."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def cmd_gguf(hf_dir, out, kind):
    import numpy as np
    import gguf
    cfg = json.load(open(os.path.join(hf_dir, "config.json")))
    if cfg.get("model_type") != "llama":
        die("%s: model_type %r, only llama is converted" % (hf_dir, cfg.get("model_type")))
    t = read_safetensors(hf_dir)
    L = cfg["num_hidden_layers"]
    n_head = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_head)
    hidden = cfg["hidden_size"]
    head_dim = cfg.get("head_dim", hidden // n_head)
    vocab = cfg["vocab_size"]
    tied = "lm_head.weight" not in t
    qtype = gguf.GGMLQuantizationType.F16 if kind == "f16" else gguf.GGMLQuantizationType.BF16
    ftype = gguf.LlamaFileType.MOSTLY_F16 if kind == "f16" else gguf.LlamaFileType.MOSTLY_BF16

    # (gguf name, hf name, rope heads or 0, keep f32)
    plan = [("token_embd.weight", "model.embed_tokens.weight", 0, False)]
    for i in range(L):
        p = "model.layers.%d." % i
        plan += [("blk.%d.attn_norm.weight" % i, p + "input_layernorm.weight", 0, True),
                 ("blk.%d.attn_q.weight" % i, p + "self_attn.q_proj.weight", n_head, False),
                 ("blk.%d.attn_k.weight" % i, p + "self_attn.k_proj.weight", n_kv, False),
                 ("blk.%d.attn_v.weight" % i, p + "self_attn.v_proj.weight", 0, False),
                 ("blk.%d.attn_output.weight" % i, p + "self_attn.o_proj.weight", 0, False),
                 ("blk.%d.ffn_norm.weight" % i, p + "post_attention_layernorm.weight", 0, True),
                 ("blk.%d.ffn_gate.weight" % i, p + "mlp.gate_proj.weight", 0, False),
                 ("blk.%d.ffn_up.weight" % i, p + "mlp.up_proj.weight", 0, False),
                 ("blk.%d.ffn_down.weight" % i, p + "mlp.down_proj.weight", 0, False)]
    plan.append(("output_norm.weight", "model.norm.weight", 0, True))
    if not tied:
        plan.append(("output.weight", "lm_head.weight", 0, False))
    for _, hf, _, _ in plan:
        if hf not in t:
            die("%s: no tensor %s" % (hf_dir, hf))

    tmp = out + ".tmp"
    w = gguf.GGUFWriter(tmp, "llama")
    w.add_name(os.path.basename(os.path.normpath(hf_dir)))
    w.add_context_length(cfg.get("max_position_embeddings", 2048))
    w.add_embedding_length(hidden)
    w.add_block_count(L)
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_rope_dimension_count(head_dim)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_layer_norm_rms_eps(cfg.get("rms_norm_eps", 1e-5))
    w.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
    w.add_file_type(ftype)
    w.add_vocab_size(vocab)
    # A placeholder SentencePiece vocabulary of the model's size: the bench
    # feeds token ids, so only the count matters, but llama.cpp's loader
    # wants the byte tokens (<0x0A> for the newline) and the special ids.
    toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    toks += ["\u2581t%d" % i for i in range(vocab - len(toks))]
    types += [1] * (vocab - len(types))
    w.add_tokenizer_model("llama")
    w.add_token_list(toks[:vocab])
    w.add_token_scores([0.0] * vocab)
    w.add_token_types(types[:vocab])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(False)

    for name, hf, _, keep32 in plan:
        _, shape, raw = t[hf]
        if keep32:
            w.add_tensor_info(name, shape, np.dtype(np.float32), int(np.prod(shape)) * 4)
        else:
            w.add_tensor_info(name, shape, np.dtype(np.float16) if kind == "f16" else np.dtype(np.uint16),
                              int(np.prod(shape)) * 2, raw_dtype=None if kind == "f16" else qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, hf, heads, keep32 in plan:
        dtype, shape, raw = t[hf]
        if keep32:
            arr = to_f32(dtype, raw)
        elif kind == "f16":
            arr = to_f16(dtype, raw)
        else:
            arr = to_bf16(dtype, raw)
        arr = arr.reshape(shape)
        if heads:
            arr = rope_permute(arr, heads)
        w.write_tensor_data(np.ascontiguousarray(arr))
    w.close()
    os.replace(tmp, out)


def cmd_quantize(src, out, kind):
    import ctypes
    import llama_cpp as lc
    ftype = {"q8_0": lc.LLAMA_FTYPE_MOSTLY_Q8_0, "q4_0": lc.LLAMA_FTYPE_MOSTLY_Q4_0}[kind]
    p = lc.llama_model_quantize_default_params()
    p.ftype = ftype
    p.nthread = int(os.environ.get("BENCH_THREADS", "2"))
    tmp = out + ".tmp"
    rc = lc.llama_model_quantize(src.encode(), tmp.encode(), ctypes.byref(p))
    if rc != 0:
        die("llama_model_quantize %s -> %s failed (%d)" % (src, kind, rc))
    os.replace(tmp, out)


# ---------------------------------------------------------------- llama.cpp
def cmd_llama(path, threads, mode, *args):
    """MODE decode N IDS: the prompt IDS (comma-separated), then N greedy
    single-token steps; prints tokens/s over the steps after the first, as
    airllm-run's tokens_per_s counts them, and the ids generated.
    MODE prefill IDS: one llama_decode of the whole prompt; prints prompt
    tokens/s. BENCH_MMAP=0 loads the weights into memory (llama.cpp's
    --no-mmap); the default maps them, as llama.cpp does."""
    import ctypes
    import numpy as np
    import llama_cpp as lc
    lc.llama_backend_init()
    mp = lc.llama_model_default_params()
    mp.use_mmap = os.environ.get("BENCH_MMAP", "1") != "0"
    # BENCH_LLAMA_EXTRA_BUFTS=0: no repacked weight buffers (CPU_REPACK,
    # AMX). bench_peers.sh sets it where the default dies of SIGILL: a
    # GGML_NATIVE build on this VM uses AMX, which the guest cannot run.
    if os.environ.get("BENCH_LLAMA_EXTRA_BUFTS", "1") == "0":
        mp.use_extra_bufts = False
    model = lc.llama_model_load_from_file(path.encode(), mp)
    if not model:
        die("llama.cpp cannot load %s" % path)
    vocab = lc.llama_model_get_vocab(model)
    n_vocab = lc.llama_vocab_n_tokens(vocab)
    cp = lc.llama_context_default_params()
    cp.n_ctx = 512
    cp.n_batch = 512
    cp.n_ubatch = 512
    cp.n_threads = threads
    cp.n_threads_batch = threads
    ctx = lc.llama_init_from_model(model, cp)
    if not ctx:
        die("llama.cpp cannot make a context for %s" % path)

    def decode(ids):
        arr = (lc.llama_token * len(ids))(*ids)
        rc = lc.llama_decode(ctx, lc.llama_batch_get_one(arr, len(ids)))
        if rc != 0:
            die("llama_decode failed (%d)" % rc)

    def argmax():
        p = lc.llama_get_logits_ith(ctx, -1)
        return int(np.ctypeslib.as_array(p, shape=(n_vocab,)).argmax())

    if mode == "prefill":
        ids = [int(x) for x in args[0].split(",")]
        t0 = time.perf_counter()
        decode(ids)
        dt = time.perf_counter() - t0
        print("%.6f" % (len(ids) / dt))
    else:
        n = int(args[0])
        ids = [int(x) for x in args[1].split(",")]
        decode(ids)
        tok = argmax()
        out, t_steps = [tok], 0.0
        for i in range(n - 1):
            t0 = time.perf_counter()
            decode([tok])
            tok = argmax()
            t_steps += time.perf_counter() - t0
            out.append(tok)
        rate = (n - 1) / t_steps if t_steps > 0 else 0.0
        print("%.6f %s" % (rate, ",".join(map(str, out))))
    lc.llama_free(ctx)
    lc.llama_model_free(model)


# ---------------------------------------------------------------- AirLLM
def cmd_airllm(hf_dir, shards, mode, n, ids):
    """AirLLM 4.0.0 as it ships on CPU (MODE shipped), or with gc.collect
    made a no-op before AirLLM is imported (MODE nogc): AirLLM calls
    gc.collect() after every layer through its clean_memory(). Prints
    tokens/s over the steps after the first, from a streamer's timestamps."""
    if mode == "nogc":
        import gc
        gc.collect = lambda *a, **k: 0
    import torch
    from airllm import AutoModel
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    model = AutoModel.from_pretrained(hf_dir, device="cpu", layer_shards_saving_path=shards)
    stamps = []

    class Stamp:
        # transformers calls put() with the prompt, then once per new token.
        def put(self, value):
            stamps.append(time.perf_counter())

        def end(self):
            pass

    x = torch.tensor([[int(v) for v in ids.split(",")]])
    with torch.inference_mode():
        model.generate(x, max_new_tokens=int(n), min_new_tokens=int(n), do_sample=False,
                       use_cache=True, streamer=Stamp())
    # stamps[0]: the prompt; [1]: the first token (prefill); then one a step.
    steps = stamps[2:]
    if len(steps) < 1:
        die("AirLLM generated too few tokens to time")
    rate = len(steps) / (steps[-1] - stamps[1])
    print("%.6f" % rate)


# ---------------------------------------------------------------- mlock
def cmd_mlock(free_bytes):
    """Locks MemAvailable - FREE_BYTES of anonymous memory (mmap + mlock, so
    the kernel must evict page cache to find it) and sleeps until killed.
    Prints 'locked N' on stdout once the memory is resident."""
    import ctypes
    # The first the OOM killer takes if others on the host need the memory
    # back: a benchmark must not cost another process its life.
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass
    avail = 0
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            avail = int(line.split()[1]) * 1024
    size = avail - int(free_bytes)
    if size <= 0:
        print("locked 0", flush=True)
    else:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        # PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS
        p = libc.mmap(None, size, 3, 0x02 | 0x20, -1, 0)
        if p is None or p == ctypes.c_void_p(-1).value:
            die("mmap of %d bytes failed: %s" % (size, os.strerror(ctypes.get_errno())))
        if libc.mlock(ctypes.c_void_p(p), ctypes.c_size_t(size)) != 0:
            die("mlock of %d bytes failed: %s" % (size, os.strerror(ctypes.get_errno())))
        print("locked %d" % size, flush=True)
    while True:
        time.sleep(3600)


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "gguf" and len(args) == 3 and args[2] in ("f16", "bf16"):
        cmd_gguf(*args)
    elif cmd == "quantize" and len(args) == 3 and args[2] in ("q8_0", "q4_0"):
        cmd_quantize(*args)
    elif cmd == "llama" and len(args) >= 4:
        cmd_llama(args[0], int(args[1]), args[2], *args[3:])
    elif cmd == "airllm" and len(args) == 5 and args[2] in ("shipped", "nogc"):
        cmd_airllm(*args)
    elif cmd == "mlock" and len(args) == 1:
        cmd_mlock(args[0])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
