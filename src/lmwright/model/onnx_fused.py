"""The engine's decode step as an ONNX graph of onnxruntime's fused CPU operators, built node by node.

Exporting the engine's PyTorch step gives about 260 small nodes (norms in six operations, attention in twenty per
layer), and onnxruntime pays each one; a step of a small model is mostly that overhead. This graph computes the
same step with onnxruntime's own fused operators, as onnxruntime-genai does: per layer `SimplifiedLayerNormalization`
(RMSNorm), one matmul for q|k|v, `GroupQueryAttention` (rotary embedding on interleaved pairs, the cached keys and
values of each row up to its own length, grouped heads), the output projection, `SkipSimplifiedLayerNormalization`
(the residual add and the next norm), the gated MLP; about 15 nodes a layer.

The cache is the engine's own memory, not a copy: each layer's keys and values of rows 0..n-1
(`k_cache[layer, :n]`, contiguous) are bound as the attention's past and present alike, so GroupQueryAttention
writes each row's new key and value (rotated as the engine keeps them) at the row's position in place. Inputs:
each row's new tokens (n, s), its length after them minus one (GroupQueryAttention's `seqlens_k`), the longest
row's length, the new positions whose logits are wanted (k,), and per layer `past_k_{i}`, `past_v_{i}` (n, kv heads,
context, head dim); outputs: the logits (n, k, vocab), the last block's output (n, s, d) and the presents (the same
memory as the pasts).
tests/test_engine.py holds it to `Engine._decode_core` and to the PyTorch engine's tokens.

Plain Llama blocks only (SwiGLU, no biases, no QK-norm, a head size that is a multiple of 16): `supported(cfg)`
says so, and the others use the exported step.
"""

from __future__ import annotations

import numpy as np
import torch


def supported(cfg) -> bool:
    """Plain SwiGLU Llama blocks, and a head size GroupQueryAttention's CPU kernel takes (a multiple of 16)."""
    return (cfg.activation == "silu" and not (cfg.attention_bias or cfg.mlp_bias or cfg.qk_norm)
            and cfg.head_dim % 16 == 0)


def decode_graph(engine):
    """The `onnx.ModelProto` of `engine`'s decode step (its weights arranged for decoding, in the graph)."""
    from onnx import TensorProto, helper, numpy_helper

    cfg, layers, m = engine.cfg, engine.layers, engine.model
    hd, heads, kv = cfg.head_dim, layers[0].n_heads, layers[0].n_kv
    inits, nodes = [], []

    def const(name: str, value) -> str:
        a = value.detach().float().contiguous().numpy() if torch.is_tensor(value) else np.asarray(value)
        inits.append(numpy_helper.from_array(a, name))
        return name

    def node(op: str, ins: list[str], outs: list[str], **attrs) -> None:
        domain = "com.microsoft" if op in ("GroupQueryAttention", "SkipSimplifiedLayerNormalization") else ""
        nodes.append(helper.make_node(op, ins, outs, domain=domain, **attrs))

    with torch.no_grad():
        const("embed", m.model.embed_tokens.weight)
        const("cos", m.rope_cos[:, :hd // 2])  # GroupQueryAttention's tables: one angle per pair
        const("sin", m.rope_sin[:, :hd // 2])
        const("head", m.lm_head.weight.t())
        const("final_norm", m.model.norm.weight)
        node("Gather", ["embed", "tokens"], ["x"])  # (n, s, d)
        x = "x"
        for i, ly in enumerate(layers):
            p = f"l{i}."
            const(p + "n1", ly.n1)
            const(p + "n2", ly.n2)
            const(p + "qkv", ly.w_qkv.t())
            const(p + "o", ly.w_o.t())
            const(p + "gu", ly.w_gu.t())
            const(p + "down", ly.w_down.t())
            node("SimplifiedLayerNormalization", [x, p + "n1"], [p + "h"], axis=-1, epsilon=ly.eps, stash_type=1)
            node("MatMul", [p + "h", p + "qkv"], [p + "packed"])
            node("GroupQueryAttention", [p + "packed", "", "", f"past_k_{i}", f"past_v_{i}", "seqlens", "total",
                                         "cos", "sin"], [p + "att", f"present_k_{i}", f"present_v_{i}"],
                 num_heads=heads, kv_num_heads=kv, do_rotary=1, rotary_interleaved=1, scale=hd ** -0.5)
            node("MatMul", [p + "att", p + "o"], [p + "attn_out"])
            node("SkipSimplifiedLayerNormalization", [p + "attn_out", x, p + "n2"], [p + "h2", "", "", p + "mid"],
                 epsilon=ly.eps)
            node("MatMul", [p + "h2", p + "gu"], [p + "gate_up"])
            node("Split", [p + "gate_up"], [p + "gate", p + "up"], axis=-1, num_outputs=2)
            node("Sigmoid", [p + "gate"], [p + "sig"])
            node("Mul", [p + "gate", p + "sig"], [p + "silu"])
            node("Mul", [p + "silu", p + "up"], [p + "gated"])
            node("MatMul", [p + "gated", p + "down"], [p + "mlp"])
            node("Add", [p + "mlp", p + "mid"], [p + "out"])
            x = p + "out"
        node("Identity", [x], ["hidden"])  # the last block's output: what prompt scoring reads (Engine._prefill)
        node("SimplifiedLayerNormalization", [x, "final_norm"], ["hf"], axis=-1, epsilon=cfg.norm_eps, stash_type=1)
        node("Gather", ["hf", "which"], ["picked"], axis=1)  # only the positions whose logits are wanted
        node("MatMul", ["picked", "head"], ["logits"])
    f32, cache = TensorProto.FLOAT, ["n", kv, cfg.max_seq_len, hd]
    inputs = [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["n", "s"]),
              helper.make_tensor_value_info("seqlens", TensorProto.INT32, ["n"]),
              helper.make_tensor_value_info("total", TensorProto.INT32, []),
              helper.make_tensor_value_info("which", TensorProto.INT64, ["k"])]
    outputs = [helper.make_tensor_value_info("logits", f32, ["n", "k", cfg.vocab_size]),
               helper.make_tensor_value_info("hidden", f32, ["n", "s", cfg.d_model])]
    for i in range(len(layers)):
        for kind in ("k", "v"):
            inputs.append(helper.make_tensor_value_info(f"past_{kind}_{i}", f32, cache))
            outputs.append(helper.make_tensor_value_info(f"present_{kind}_{i}", f32, cache))
    graph = helper.make_graph(nodes, "lmwright_decode_step", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])
