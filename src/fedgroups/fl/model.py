"""A small decoder-only transformer (pre-LN, causal SDPA attention, tied embeddings).

Parameter names are part of the federated API: ``local_params`` globs such as
``"blocks.3.*"`` or ``"blocks.[23].*"`` select parameters that stay with a client or a
sub-federation instead of being aggregated.  The names are::

    tok_emb.weight                      (vocab, d)   also the output head (tied)
    pos_emb.weight                      (seq_len, d)
    blocks.{i}.ln1.weight / .bias       (d,)
    blocks.{i}.attn.qkv.weight          (3d, d)
    blocks.{i}.attn.proj.weight         (d, d)
    blocks.{i}.ln2.weight / .bias       (d,)
    blocks.{i}.mlp.fc.weight            (ff, d)
    blocks.{i}.mlp.proj.weight          (d, ff)
    ln_f.weight / .bias                 (d,)

Linear layers have no biases (fewer parameters to aggregate, no loss in quality at these
sizes).  There is no dropout: every source of randomness in a simulation is a seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fedgroups.fl.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class ModelArgs:
    """Resolved model shape (a preset plus overrides, with the tokenizer's vocab size)."""

    vocab_size: int
    seq_len: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int


# name -> (d_model, n_layers, n_heads); d_ff defaults to 4 * d_model.
PRESETS: dict[str, tuple[int, int, int]] = {
    "tiny": (64, 2, 4),  # ~0.1M + embeddings: CPU tests
    "mini": (128, 4, 4),  # ~0.8M + embeddings: CPU demos
    "small": (384, 6, 6),  # ~10.6M + embeddings
    "100m": (768, 12, 12),  # ~85M + embeddings (GPT-2 small shape)
    "1b": (2048, 20, 16),  # ~1.0B + embeddings
}


class CausalSelfAttention(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.n_heads = args.n_heads
        self.qkv = nn.Linear(args.d_model, 3 * args.d_model, bias=False)
        self.proj = nn.Linear(args.d_model, args.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape  # (B, T, C)
        q, k, v = self.qkv(x).split(c, dim=2)
        # (B, H, T, C/H)
        q = q.view(b, t, self.n_heads, c // self.n_heads).transpose(1, 2)
        k = k.view(b, t, self.n_heads, c // self.n_heads).transpose(1, 2)
        v = v.view(b, t, self.n_heads, c // self.n_heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(b, t, c)  # (B, T, C)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.fc = nn.Linear(args.d_model, args.d_ff, bias=False)
        self.proj = nn.Linear(args.d_ff, args.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(args.d_model)
        self.attn = CausalSelfAttention(args)
        self.ln2 = nn.LayerNorm(args.d_model)
        self.mlp = MLP(args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class Transformer(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        if args.d_model % args.n_heads != 0:
            raise ConfigError(
                f"model.d_model ({args.d_model}) must be divisible by model.n_heads "
                f"({args.n_heads})"
            )
        self.args = args
        self.tok_emb = nn.Embedding(args.vocab_size, args.d_model)
        self.pos_emb = nn.Embedding(args.seq_len, args.d_model)
        self.blocks = nn.ModuleList(Block(args) for _ in range(args.n_layers))
        self.ln_f = nn.LayerNorm(args.d_model)

    def init_weights(self, generator: torch.Generator) -> None:
        """GPT-2 style init, drawn from ``generator`` (never the global RNG)."""
        residual_std = 0.02 / math.sqrt(2 * self.args.n_layers)
        for name, p in self.named_parameters():
            if name.endswith(("ln1.weight", "ln2.weight", "ln_f.weight")):
                nn.init.ones_(p)
            elif name.endswith(".bias"):
                nn.init.zeros_(p)
            else:
                std = residual_std if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, mean=0.0, std=std, generator=generator)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, vocab) for token ids (B, T)."""
        _, t = idx.shape
        if t > self.args.seq_len:
            raise ValueError(f"sequence length {t} exceeds model.seq_len {self.args.seq_len}")
        pos = torch.arange(t, device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(pos)  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        return x @ self.tok_emb.weight.t()  # tied output head: (B, T, vocab)

    def loss(self, seqs: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy over a batch of packed sequences (B, T + 1)."""
        return lm_loss(self, seqs)


def lm_logits(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, V) of any causal LM for token ids (B, T).

    Accepts a module returning the logits tensor, an object with ``.logits`` (Hugging Face
    ``transformers`` outputs) or a tuple whose first item is the logits.
    """
    out = model(idx)
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if logits is None and isinstance(out, (tuple, list)) and out:
        logits = out[0]
    if not isinstance(logits, torch.Tensor):
        raise ConfigError(
            f"the model returned {type(out).__name__}; a model must return logits (B, T, V), "
            "an object with .logits, or a tuple starting with the logits"
        )
    return logits


def lm_loss(model: nn.Module, seqs: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of ``model`` over packed sequences (B, T + 1)."""
    logits = lm_logits(model, seqs[:, :-1])  # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), seqs[:, 1:].reshape(-1))


def build_model(args: ModelArgs, seed: int) -> Transformer:
    model = Transformer(args)
    model.init_weights(torch.Generator().manual_seed(seed))
    return model


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
