#!/usr/bin/env python3
"""Writes the seed corpora of the model fuzz targets (standard library only):
tests/fuzz/corpus/gguf/*.gguf and tests/fuzz/corpus/safetensors/*.safetensors.
Small valid files that reach every branch of a successful parse, for libFuzzer
and the replay tests to mutate. Deterministic; run from anywhere.
"""
import json
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
rnd = random.Random(7)


def s(x):
    b = x.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, typ, payload):
    return s(key) + struct.pack("<I", typ) + payload


def u32(key, v):
    return kv(key, 4, struct.pack("<I", v))


def f32(key, v):
    return kv(key, 6, struct.pack("<f", v))


def string(key, v):
    return kv(key, 8, s(v))


def arr(key, etype, fmt, values):
    body = struct.pack("<IQ", etype, len(values))
    for v in values:
        body += s(v) if etype == 8 else struct.pack("<" + fmt, v)
    return kv(key, 9, body)


def gguf(version, kvs, tensors, align=32):
    """tensors: (name, ne innermost first, ggml type, raw bytes)"""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs)) + b"".join(kvs)
    infos, data, off = b"", b"", 0
    for name, ne, typ, raw in tensors:
        infos += s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        infos += struct.pack("<IQ", typ, off)
        pad = (-len(raw)) % align
        data += raw + b"\0" * pad
        off += len(raw) + pad
    out = head + infos
    out += b"\0" * ((-len(out)) % align)
    return out + data


def f32_bytes(n):
    return struct.pack("<%df" % n, *[rnd.uniform(-1, 1) for _ in range(n)])


def q8_block():
    return struct.pack("<e", 0.01) + bytes(rnd.randrange(256) for _ in range(32))


def tiny_llama():
    d, ff, vocab, heads, kvh = 8, 16, 12, 2, 1
    kvs = [
        string("general.architecture", "llama"),
        string("general.name", "seed"),
        u32("llama.block_count", 1),
        u32("llama.embedding_length", d),
        u32("llama.attention.head_count", heads),
        u32("llama.attention.head_count_kv", kvh),
        u32("llama.feed_forward_length", ff),
        u32("llama.context_length", 64),
        f32("llama.rope.freq_base", 10000.0),
        f32("llama.attention.layer_norm_rms_epsilon", 1e-5),
        arr("tokenizer.ggml.tokens", 8, "", ["<s>", "</s>", "a", "b", "\u00e9"]),
        arr("tokenizer.ggml.scores", 6, "f", [0.0, -1.0, -2.0, -3.0, -4.0]),
        arr("tokenizer.ggml.token_type", 5, "i", [3, 3, 1, 1, 1]),
        u32("tokenizer.ggml.bos_token_id", 0),
    ]
    hd = d // heads
    t = [("token_embd.weight", [d, vocab], 0, f32_bytes(d * vocab)),
         ("output_norm.weight", [d], 0, f32_bytes(d)),
         ("blk.0.attn_norm.weight", [d], 0, f32_bytes(d)),
         ("blk.0.attn_q.weight", [d, heads * hd], 0, f32_bytes(d * heads * hd)),
         ("blk.0.attn_k.weight", [d, kvh * hd], 0, f32_bytes(d * kvh * hd)),
         ("blk.0.attn_v.weight", [d, kvh * hd], 0, f32_bytes(d * kvh * hd)),
         ("blk.0.attn_output.weight", [heads * hd, d], 0, f32_bytes(d * heads * hd)),
         ("blk.0.ffn_norm.weight", [d], 0, f32_bytes(d)),
         ("blk.0.ffn_gate.weight", [d, ff], 0, f32_bytes(d * ff)),
         ("blk.0.ffn_up.weight", [d, ff], 0, f32_bytes(d * ff)),
         ("blk.0.ffn_down.weight", [ff, d], 0, f32_bytes(d * ff))]
    return gguf(3, kvs, t)


def quant_tensors():
    q4k = struct.pack("<ee", 0.02, 0.01) + bytes(rnd.randrange(256) for _ in range(140))
    q6k = bytes(rnd.randrange(256) for _ in range(208)) + struct.pack("<e", 0.003)
    q4_1 = struct.pack("<ee", 0.1, -0.5) + bytes(rnd.randrange(256) for _ in range(16))
    q5_0 = struct.pack("<e", 0.1) + bytes(rnd.randrange(256) for _ in range(20))
    q4_0 = struct.pack("<e", 0.1) + bytes(rnd.randrange(256) for _ in range(16))
    f16 = struct.pack("<4e", 1.0, -2.0, 0.5, 65504.0)
    bf16 = struct.pack("<4H", 0x3F80, 0xC000, 0x7F80, 0x0001)
    t = [("q8", [64], 8, q8_block() + q8_block()), ("q4k", [256], 12, q4k),
         ("q6k", [256], 14, q6k), ("q41", [32], 3, q4_1), ("q50", [32], 6, q5_0),
         ("q40", [32, 1], 2, q4_0), ("h", [2, 2], 1, f16), ("bh", [4, 1, 1, 1], 30, bf16),
         ("q5k", [256], 13, bytes(176))]
    return gguf(3, [u32("general.alignment", 64)], t, align=64)


def all_kv_types():
    kvs = [kv("u8", 0, b"\x07"), kv("i8", 1, b"\xf9"), kv("u16", 2, struct.pack("<H", 600)),
           kv("i16", 3, struct.pack("<h", -600)), u32("u32", 70000),
           kv("i32", 5, struct.pack("<i", -70000)), f32("f32", 1.5), kv("bool", 7, b"\x01"),
           string("str", "hello"), kv("u64", 10, struct.pack("<Q", 1 << 40)),
           kv("i64", 11, struct.pack("<q", -(1 << 40))), kv("f64", 12, struct.pack("<d", 2.5)),
           arr("arr_u8", 0, "B", [1, 2, 3]), arr("arr_i64", 11, "q", [-1, 1]),
           arr("arr_str", 8, "", ["x", "", "yz"]), arr("arr_empty", 4, "I", [])]
    return gguf(2, kvs, [])


def safetensors(tensors, metadata=None):
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + data


def main():
    g = os.path.join(HERE, "corpus", "gguf")
    st = os.path.join(HERE, "corpus", "safetensors")
    os.makedirs(g, exist_ok=True)
    os.makedirs(st, exist_ok=True)
    files = {
        os.path.join(g, "tiny_llama.gguf"): tiny_llama(),
        os.path.join(g, "quant_types.gguf"): quant_tensors(),
        os.path.join(g, "all_kv_types_v2.gguf"): all_kv_types(),
        os.path.join(st, "f32_f16_bf16.safetensors"): safetensors(
            [("a", "F32", [2, 3], f32_bytes(6)), ("b", "F16", [4], struct.pack("<4e", 1, 2, 3, 4)),
             ("c", "BF16", [2, 1], struct.pack("<2H", 0x3F80, 0x4000))]),
        os.path.join(st, "metadata_and_ints.safetensors"): safetensors(
            [("ids", "I64", [3], struct.pack("<3q", 1, 2, 3)), ("s", "F32", [], f32_bytes(1)),
             ("z", "F32", [0, 4], b""), ("u", "U8", [1, 1, 1, 2], b"\x01\x02")],
            {"format": "pt", "note": "seed"}),
        os.path.join(st, "model_like.safetensors"): safetensors(
            [("model.embed_tokens.weight", "BF16", [4, 2], bytes(16)),
             ("model.layers.0.self_attn.q_proj.weight", "F16", [2, 2], bytes(8)),
             ("lm_head.weight", "F32", [4, 2], f32_bytes(8))]),
    }
    for path, data in files.items():
        with open(path, "wb") as f:
            f.write(data)
        print(f"{os.path.relpath(path, HERE)}: {len(data)} bytes")


if __name__ == "__main__":
    main()
