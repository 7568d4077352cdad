"""The language-modelling loss: plain (`lm_loss`, over logits) and fused with the output projection.

The fused form computes cross-entropy in row chunks, with the gradients formed in forward.

The usual path materialises the (tokens x vocab) logits, a log-softmax of the same size, and in backward a
zero-filled one-hot and a softmax gradient: four passes over the largest tensors of a small model's step. Here
each chunk of hidden states is projected, its log-sum-exp and loss taken, and the logits buffer turned in
place into d(loss)/d(logits) = softmax - target distribution; the gradients for the hidden states and the
output weight follow by two matmuls while the chunk is hot. Backward only scales what forward stored. The
full logits are never held, so memory falls by 2 x tokens x vocab floats as well.

It is the same maths as `F.cross_entropy(h @ W.T, targets, label_smoothing=eps)` (mean over targets that
are not -100); `tests/test_model.py` checks loss and gradients against it.
"""

from __future__ import annotations

import torch

from lmwright.model.onednn import matmul_nt


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of logits (..., vocab) against targets (-100 = ignored), computed in fp32."""
    return torch.nn.functional.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1),
                                             ignore_index=-100, label_smoothing=label_smoothing)


class LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, smoothing: float,
                chunk: int, grads: bool) -> torch.Tensor:
        n, vocab = h.shape[0], weight.shape[0]
        valid = targets != -100
        count = valid.sum().clamp(min=1)
        # a frozen output head (LoRA fine-tuning) needs no weight gradient: a third of the loss's products
        want_h, want_w = grads and ctx.needs_input_grad[0], grads and ctx.needs_input_grad[1]
        grad_h = torch.empty_like(h) if want_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if want_w else None
        # while training, oneDNN's fp32 products (a step repeats its shapes); a validation's stay on torch's
        mm = matmul_nt if grads else (lambda a, w: a @ w.t())
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        for s in range(0, n, chunk):
            hc, tc, vc = h[s : s + chunk], targets[s : s + chunk], valid[s : s + chunk]
            logits = mm(hc, weight).float()
            safe_t = tc.clamp(min=0)
            picked = logits.gather(1, safe_t[:, None]).squeeze(1)
            mean = logits.mean(dim=-1) if smoothing > 0 else None
            # the softmax in place, and the log-sum-exp from its sums: torch.logsumexp would subtract the max into
            # a new (chunk x vocab) tensor and take a second exp over it (the loss of 4,096 tokens at vocabulary
            # 4,096: 180 against 196 ms, measured; its three matmuls are the rest)
            peak = logits.amax(dim=-1)
            logits.sub_(peak[:, None]).exp_()
            sums = logits.sum(dim=-1)
            lse = peak + sums.log()
            loss = lse - picked
            if smoothing > 0:
                loss = (1 - smoothing) * loss + smoothing * (lse - mean)
            total += (loss * vc).sum()
            if not grads:  # validation, or no input needs a gradient: the loss is all
                continue
            # exp(logits - max) -> (softmax - target distribution), masked and scaled by 1/count, in place
            scale = vc.float() / count
            logits.mul_((scale / sums)[:, None])
            if smoothing > 0:
                logits.sub_((smoothing / vocab) * scale[:, None])
            logits.scatter_add_(1, safe_t[:, None], (-(1 - smoothing) * scale)[:, None])
            g = logits.to(h.dtype)
            if want_h:
                grad_h[s : s + chunk] = matmul_nt(g, weight.t())
            if not want_w:
                continue
            if h.dtype == torch.bfloat16:
                # the product in bf16, as autocast forms every other layer's weight gradient: 4.5x an fp32 one on a
                # CPU with bf16 units (4,096 x 1,024 x 192: 3.9 against 17.6 ms), without a transposed fp32 copy
                grad_w.add_(g.t() @ hc)
            elif h.dtype == torch.float32:
                grad_w.addmm_(g.t(), hc)
            else:  # fp16: the small gradients would lose range in an fp16 product
                grad_w.addmm_(g.t().float(), hc.float())
        if grads:
            ctx.save_for_backward(grad_h, grad_w.to(weight.dtype) if want_w else None)
        return total / count

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        return (grad_h * grad_out if grad_h is not None else None, grad_w * grad_out if grad_w is not None else None,
                None, None, None, None)


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.0,
                         chunk: int = 1024) -> torch.Tensor:
    """Mean cross-entropy of `h @ weight.T` against `targets` (-100 = ignored), without the full logits; the
    gradients are formed only when autograd will ask for them (not under `torch.no_grad()`, as in validation)."""
    grads = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
    return LinearCrossEntropy.apply(h.reshape(-1, h.shape[-1]), weight, targets.reshape(-1), smoothing, chunk, grads)
