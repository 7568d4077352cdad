"""The engine's decode step as an ONNX graph of onnxruntime's fused CPU operators, built node by node.

Exporting the engine's PyTorch step gives about 260 small nodes (norms in six operations, attention in twenty per
layer), and onnxruntime pays each one; a step of a small model is mostly that overhead. This graph computes the
same step with onnxruntime's own fused operators, as onnxruntime-genai does: per layer `SimplifiedLayerNormalization`
(RMSNorm), one matmul for q|k|v, `GroupQueryAttention` (rotary embedding on interleaved pairs, the cached keys and
values of each row up to its own length, grouped heads), the output projection, `SkipSimplifiedLayerNormalization`
(the residual add and the next norm), the gated MLP; about 20 nodes a layer. Inputs and outputs are those of
`Engine._decode_core`: tokens and positions (n,), the cache cut to the span in use (layers, n, kv heads, span,
head dim); the logits (n, vocab) and each row's new key and value (layers, n, kv heads, head dim), rotated as the
engine's cache keeps them. tests/test_engine.py holds it to `generate`'s tokens.

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
        const("ax0", np.array([0], np.int64))
        const("ax1", np.array([1], np.int64))
        const("ax2", np.array([2], np.int64))
        const("span_at", np.array(3, np.int64))
        const("one", np.array(1, np.int32))
        const("rows_shape", np.array([-1, 1, 1, 1], np.int64))
        const("kv_1_hd", np.array([kv, 1, hd], np.int64))
        node("Gather", ["embed", "tokens"], ["x2"])
        node("Unsqueeze", ["x2", "ax1"], ["x"])  # (n, 1, d): one new token per row
        # each row has pos cached keys; GroupQueryAttention's seqlens_k is its total length minus one, and the
        # total sequence length is the longest row's with the new token
        node("Cast", ["pos"], ["seqlens"], to=TensorProto.INT32)
        node("Shape", ["k_cache"], ["cache_shape"])
        node("Gather", ["cache_shape", "span_at"], ["span"], axis=0)
        node("Cast", ["span"], ["span32"], to=TensorProto.INT32)
        node("Add", ["span32", "one"], ["total"])
        # the new key of row i is at position pos[i] of the attention's present keys: an index of (n, kv, 1, hd)
        node("Shape", ["tokens"], ["rows"])
        node("Concat", ["rows", "kv_1_hd"], ["at_shape"], axis=0)
        node("Reshape", ["pos", "rows_shape"], ["pos4"])
        node("Expand", ["pos4", "at_shape"], ["at"])
        x, new_k, new_v = "x", [], []
        for i, ly in enumerate(layers):
            p = f"l{i}."
            const(p + "n1", ly.n1)
            const(p + "n2", ly.n2)
            const(p + "qkv", ly.w_qkv.t())
            const(p + "o", ly.w_o.t())
            const(p + "gu", ly.w_gu.t())
            const(p + "down", ly.w_down.t())
            const(p + "i", np.array(i, np.int64))
            node("SimplifiedLayerNormalization", [x, p + "n1"], [p + "h"], axis=-1, epsilon=ly.eps, stash_type=1)
            node("MatMul", [p + "h", p + "qkv"], [p + "packed"])
            node("Gather", ["k_cache", p + "i"], [p + "past_k"], axis=0)
            node("Gather", ["v_cache", p + "i"], [p + "past_v"], axis=0)
            node("GroupQueryAttention", [p + "packed", "", "", p + "past_k", p + "past_v", "seqlens", "total", "cos",
                                         "sin"], [p + "att", p + "present_k", p + "present_v"], num_heads=heads,
                 kv_num_heads=kv, do_rotary=1, rotary_interleaved=1, scale=hd ** -0.5)
            node("GatherElements", [p + "present_k", "at"], [p + "k"], axis=2)
            node("GatherElements", [p + "present_v", "at"], [p + "v"], axis=2)
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
            for kind, out in (("k", new_k), ("v", new_v)):
                node("Squeeze", [p + kind, "ax2"], [p + kind + "3"])
                node("Unsqueeze", [p + kind + "3", "ax0"], [p + kind + "4"])
                out.append(p + kind + "4")
            x = p + "out"
        node("SimplifiedLayerNormalization", [x, "final_norm"], ["hf"], axis=-1, epsilon=cfg.norm_eps, stash_type=1)
        node("MatMul", ["hf", "head"], ["logits3"])
        node("Squeeze", ["logits3", "ax1"], ["logits"])
        node("Concat", new_k, ["new_k"], axis=0)
        node("Concat", new_v, ["new_v"], axis=0)
    n_layers, f32 = len(layers), TensorProto.FLOAT
    cache = [n_layers, "n", kv, "span", hd]
    graph = helper.make_graph(
        nodes, "lmwright_decode_step",
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["n"]),
         helper.make_tensor_value_info("pos", TensorProto.INT64, ["n"]),
         helper.make_tensor_value_info("k_cache", f32, cache), helper.make_tensor_value_info("v_cache", f32, cache)],
        [helper.make_tensor_value_info("logits", f32, ["n", cfg.vocab_size]),
         helper.make_tensor_value_info("new_k", f32, [n_layers, "n", kv, hd]),
         helper.make_tensor_value_info("new_v", f32, [n_layers, "n", kv, hd])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])
