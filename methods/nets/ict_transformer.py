"""ICT's appearance-prior transformer: a bidirectional ("BERT mode") GPT over palette tokens.

Wan et al., "High-Fidelity Pluralistic Image Completion with Transformers", ICCV 2021. The network
reads a low-resolution image as a raster sequence of colour-palette indices, with missing positions
marked by a mask whose token embeddings are zeroed, and predicts a distribution over the 512 palette
colours at every position. Attention is full (no causal mask); the ``attn.mask`` buffers exist only
because the released checkpoints carry them and are loaded strictly.

State-dict names follow the reference (``tok_emb``, ``pos_emb``, ``blocks.<i>.{ln1,ln2,attn,mlp}``,
``ln_f``, ``head``), so released checkpoints load without renaming.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class ICTTransformerConfig:
    """Hyper-parameters of the ICT transformer.

    Parameters
    ----------
    grid_size : int
        Side of the square token grid (32, or 48 for the FFHQ model); the sequence length is
        ``grid_size ** 2``.
    n_layer, n_head, n_embd : int
        Depth, attention heads and width.
    vocab_size : int
        Palette size.
    layer_norm_eps : float
        LayerNorm epsilon (PyTorch's default in the reference).
    """

    grid_size: int = 32
    n_layer: int = 35
    n_head: int = 8
    n_embd: int = 512
    vocab_size: int = 512
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")

    @property
    def block_size(self) -> int:
        """Sequence length: one token per grid cell."""
        return self.grid_size * self.grid_size


#: The released configurations (stage-1 commands of the reference ``run.py``).
ICT_TRANSFORMER_CONFIGS: dict[str, ICTTransformerConfig] = {
    "ImageNet": ICTTransformerConfig(grid_size=32, n_layer=35, n_head=8, n_embd=1024),
    "FFHQ": ICTTransformerConfig(grid_size=48, n_layer=30, n_head=8, n_embd=512),
    "Places2_Nature": ICTTransformerConfig(grid_size=32, n_layer=35, n_head=8, n_embd=512),
}


class _Gelu2(nn.Module):
    """The sigmoid approximation of GELU used by image-GPT: ``x * sigmoid(1.702 x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class BidirectionalSelfAttention(nn.Module):
    """Multi-head self-attention without a causal mask, with separate key/query/value projections."""

    def __init__(self, config: ICTTransformerConfig, causal_mask: torch.Tensor) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.key = nn.Linear(config.n_embd, config.n_embd)
        self.query = nn.Linear(config.n_embd, config.n_embd)
        self.value = nn.Linear(config.n_embd, config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        # Unused by the bidirectional model; kept (one tensor shared by every block) so the released
        # state dicts, which store it per block, load strictly.
        self.register_buffer("mask", causal_mask)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        return x.view(batch, length, self.n_head, width // self.n_head).transpose(1, 2)

    def forward(self, x: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
        """Attend from every position (or only from ``rows``) to every position of ``x``."""
        queries = x if rows is None else x[:, rows]
        batch, length, width = queries.shape
        key = self._split_heads(self.key(x))
        query = self._split_heads(self.query(queries))
        value = self._split_heads(self.value(x))
        scores = (query @ key.transpose(-2, -1)) * (1.0 / math.sqrt(key.size(-1)))
        weights = F.softmax(scores, dim=-1)
        mixed = (weights @ value).transpose(1, 2).contiguous().view(batch, length, width)
        return self.proj(mixed)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: ``x + attn(ln1(x))`` then ``x + mlp(ln2(x))`` with a 4x GELU2 MLP."""

    def __init__(self, config: ICTTransformerConfig, causal_mask: torch.Tensor) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.ln2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.attn = BidirectionalSelfAttention(config, causal_mask)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd),
            _Gelu2(),
            nn.Linear(4 * config.n_embd, config.n_embd),
        )

    def forward(self, x: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
        """Run the block; with ``rows`` only those positions are returned (keys still span all)."""
        attended = self.attn(self.ln1(x), rows)
        x = (x if rows is None else x[:, rows]) + attended
        return x + self.mlp(self.ln2(x))


class ICTTransformer(nn.Module):
    """The ICT transformer; ``forward(ids, missing)`` returns palette logits per position.

    Parameters
    ----------
    config : ICTTransformerConfig
        Size of the model and of its token grid.
    """

    def __init__(self, config: ICTTransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Parameter(torch.zeros(1, config.block_size, config.n_embd))
        causal_mask = torch.tril(torch.ones(config.block_size, config.block_size)).view(
            1, 1, config.block_size, config.block_size
        )
        self.blocks = nn.ModuleList(TransformerBlock(config, causal_mask) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)

    #: Rows the last block processes when only one position's logits are wanted. A single row
    #: would switch the matrix products to matrix-vector kernels whose rounding differs; a small
    #: window keeps the values bit-identical to those of the full forward pass.
    query_window = 8

    def forward(self, ids: torch.Tensor, missing: torch.Tensor, position: int | None = None) -> torch.Tensor:
        """Predict palette logits.

        Parameters
        ----------
        ids : (B, T) int64 tensor
            Palette indices in raster order; values at missing positions are ignored.
        missing : (B, T) float32 tensor
            1 where the token is unknown, 0 where it is known.
        position : int, optional
            When given, only the logits at this position are returned, and the last block, the final
            LayerNorm and the head process only a window of `query_window` rows around it.

        Returns
        -------
        (B, T, vocab) tensor, or (B, vocab) when ``position`` is given
        """
        length = ids.shape[1]
        if length > self.config.block_size:
            raise ValueError(f"sequence of {length} tokens exceeds the model's {self.config.block_size}")
        x = self.tok_emb(ids) * (1 - missing.unsqueeze(2)) + self.pos_emb[:, :length, :]
        rows = None
        if position is not None:
            start = max(0, min(position, length - self.query_window))
            rows = slice(start, start + self.query_window)
        last = len(self.blocks) - 1
        for index, block in enumerate(self.blocks):
            x = block(x, rows if index == last else None)
        logits = self.head(self.ln_f(x))
        if position is None:
            return logits
        return logits[:, position - rows.start]


def config_from_state_dict(state: dict[str, torch.Tensor], n_head: int) -> ICTTransformerConfig:
    """Infer the transformer configuration from a state dict's shapes (the head count is not in them).

    Raises
    ------
    ValueError
        When the state dict lacks the embedding tensors or its sequence length is not a square.
    """
    try:
        vocab_size, n_embd = state["tok_emb.weight"].shape
        block_size = state["pos_emb"].shape[1]
    except (KeyError, ValueError, IndexError):
        raise ValueError("state dict has no 'tok_emb.weight'/'pos_emb' of the expected shapes") from None
    grid_size = math.isqrt(block_size)
    if grid_size * grid_size != block_size:
        raise ValueError(f"sequence length {block_size} is not a square token grid")
    block_ids = {int(key.split(".")[1]) for key in state if key.startswith("blocks.")}
    return ICTTransformerConfig(
        grid_size=grid_size,
        n_layer=len(block_ids),
        n_head=n_head,
        n_embd=int(n_embd),
        vocab_size=int(vocab_size),
    )
