"""Torch networks for tabular data: MLP, ResNet (Gorishniy et al. 2021) and TabNet (Arik &
Pfister 2019).

Every network maps float32 (batch, in_features) to (batch, out_features); TabNet returns a
pair (output, sparsity_loss). All state is held in parameters or buffers, so `.to(device)`
moves a network to cpu, cuda or mps as a whole.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ----------------------------------------------------------------------------------------
# MLP and ResNet: "Revisiting Deep Learning Models for Tabular Data" (Gorishniy et al. 2021)
# ----------------------------------------------------------------------------------------


class MLP(nn.Module):
    """MLP(x) = Linear(Block(...Block(x))), Block(x) = Dropout(ReLU(Linear(x)))."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_layers: int,
        d_hidden: int,
        dropout: float,
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        d_in = in_features
        for _ in range(n_layers):
            blocks += [nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Dropout(dropout)]
            d_in = d_hidden
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(d_in, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(x))


def _norm(kind: str, d: int) -> nn.Module:
    if kind == "batchnorm":
        return nn.BatchNorm1d(d)
    if kind == "layernorm":
        return nn.LayerNorm(d)
    raise ValueError(f"normalization={kind!r} is not one of batchnorm, layernorm")


class ResNetBlock(nn.Module):
    """x + Dropout(Linear(Dropout(ReLU(Linear(Norm(x))))))."""

    def __init__(
        self, d_main: int, d_hidden: int, dropout_first: float, dropout_second: float, norm: str
    ) -> None:
        super().__init__()
        self.norm = _norm(norm, d_main)
        self.linear_first = nn.Linear(d_main, d_hidden)
        self.dropout_first = nn.Dropout(dropout_first)
        self.linear_second = nn.Linear(d_hidden, d_main)
        self.dropout_second = nn.Dropout(dropout_second)

    def forward(self, x: Tensor) -> Tensor:
        z = self.dropout_first(F.relu(self.linear_first(self.norm(x))))
        return x + self.dropout_second(self.linear_second(z))


class ResNet(nn.Module):
    """ResNet(x) = Head(Block(...Block(Linear(x)))), Head(x) = Linear(ReLU(Norm(x)))."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_blocks: int,
        d_main: int,
        d_hidden_factor: float,
        dropout_first: float,
        dropout_second: float,
        normalization: str,
    ) -> None:
        super().__init__()
        d_hidden = int(d_main * d_hidden_factor)
        self.first_layer = nn.Linear(in_features, d_main)
        self.blocks = nn.Sequential(
            *[
                ResNetBlock(d_main, d_hidden, dropout_first, dropout_second, normalization)
                for _ in range(n_blocks)
            ]
        )
        self.head_norm = _norm(normalization, d_main)
        self.head = nn.Linear(d_main, out_features)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.first_layer(x))
        return self.head(F.relu(self.head_norm(x)))


# ----------------------------------------------------------------------------------------
# Sparse normalizers: sparsemax (Martins & Astudillo 2016) and 1.5-entmax (Peters et al. 2019)
# ----------------------------------------------------------------------------------------
# Both are p = [x - tau]_+^(1/(alpha-1)) with tau chosen so p sums to 1. The exact tau follows
# from the support S: sparsemax tau = (sum_S x - 1) / |S|; 1.5-entmax (x = z / 2)
# tau = mean_S x - sqrt((1 - ss_S) / |S|), ss_S = sum_S (x - mean_S x)^2. The support comes
# from sorting (fast) or, where torch's deterministic mode forbids float cumsum (CUDA), from
# bisection on tau followed by the same exact step.

_BISECTION_STEPS = 40


def _use_bisection(x: Tensor) -> bool:
    return x.is_cuda and torch.are_deterministic_algorithms_enabled()


def _exact_tau_from_support(x: Tensor, support: Tensor, alpha15: bool) -> Tensor:
    k = support.sum(-1, keepdim=True).clamp_min(1).to(x.dtype)
    xs = torch.where(support, x, torch.zeros_like(x))
    total = xs.sum(-1, keepdim=True)
    if not alpha15:
        return (total - 1) / k
    mean = total / k
    ss = (torch.where(support, x - mean, torch.zeros_like(x)) ** 2).sum(-1, keepdim=True)
    return mean - torch.sqrt(((1 - ss) / k).clamp_min(0))


def _bisect_support(x: Tensor, alpha15: bool) -> Tensor:
    # x is shifted so max(x) == 0: tau lies in [-1, 0] for both normalizers.
    lo = torch.full_like(x[..., :1], -1.0)
    hi = torch.zeros_like(lo)
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2
        p = (x - mid).clamp_min(0)
        mass = (p * p if alpha15 else p).sum(-1, keepdim=True)
        above = mass >= 1
        lo = torch.where(above, mid, lo)
        hi = torch.where(above, hi, mid)
    return x > lo


def _sparsemax_tau(x: Tensor) -> Tensor:
    if _use_bisection(x):
        return _exact_tau_from_support(x, _bisect_support(x, alpha15=False), alpha15=False)
    z_sorted, _ = torch.sort(x, dim=-1, descending=True)
    cumsum = z_sorted.cumsum(-1) - 1
    rank = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=x.dtype)
    support_size = (rank * z_sorted > cumsum).sum(-1, keepdim=True)
    return cumsum.gather(-1, support_size - 1) / support_size.to(x.dtype)


def _entmax15_tau(x: Tensor) -> Tensor:
    if _use_bisection(x):
        return _exact_tau_from_support(x, _bisect_support(x, alpha15=True), alpha15=True)
    x_sorted, _ = torch.sort(x, dim=-1, descending=True)
    rank = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=x.dtype)
    mean = x_sorted.cumsum(-1) / rank
    mean_sq = (x_sorted**2).cumsum(-1) / rank
    ss = rank * (mean_sq - mean**2)
    tau = mean - torch.sqrt(((1 - ss) / rank).clamp_min(0))
    support_size = (tau <= x_sorted).sum(-1, keepdim=True)
    return tau.gather(-1, support_size - 1)


class _SparsemaxFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor) -> Tensor:  # type: ignore[override]
        x = z - z.amax(-1, keepdim=True)
        p = (x - _sparsemax_tau(x)).clamp_min(0)
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (p,) = ctx.saved_tensors
        support = p > 0
        g = torch.where(support, grad, torch.zeros_like(grad))
        mean_g = g.sum(-1, keepdim=True) / support.sum(-1, keepdim=True).to(grad.dtype)
        return torch.where(support, grad - mean_g, torch.zeros_like(grad))


class _Entmax15Function(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor) -> Tensor:  # type: ignore[override]
        x = z / 2
        x = x - x.amax(-1, keepdim=True)
        p = (x - _entmax15_tau(x)).clamp_min(0) ** 2
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (p,) = ctx.saved_tensors
        root = p.sqrt()
        g = grad * root
        q = g.sum(-1, keepdim=True) / root.sum(-1, keepdim=True)
        return g - q * root


def sparsemax(z: Tensor) -> Tensor:
    """Euclidean projection of each row of `z` onto the simplex (last dim)."""
    return _SparsemaxFunction.apply(z)


def entmax15(z: Tensor) -> Tensor:
    """1.5-entmax of each row of `z` (last dim): sparse, smoother than sparsemax."""
    return _Entmax15Function.apply(z)


_MASK_FUNCTIONS = {"sparsemax": sparsemax, "entmax": entmax15}


# ----------------------------------------------------------------------------------------
# TabNet: "TabNet: Attentive Interpretable Tabular Learning" (Arik & Pfister 2019)
# ----------------------------------------------------------------------------------------


class GhostBatchNorm(nn.Module):
    """BatchNorm over virtual batches of `virtual_batch_size` rows (Hoffer et al. 2017).

    Training normalizes each near-equal chunk of the batch with its own statistics and updates
    the running statistics once per chunk; evaluation uses the running statistics, so it is
    a plain batch norm over the whole batch.
    """

    def __init__(self, num_features: int, virtual_batch_size: int, momentum: float) -> None:
        super().__init__()
        self.virtual_batch_size = virtual_batch_size
        self.bn = nn.BatchNorm1d(num_features, momentum=momentum)

    def forward(self, x: Tensor) -> Tensor:
        n_chunks = math.ceil(x.shape[0] / self.virtual_batch_size)
        if not self.training or n_chunks <= 1:
            return self.bn(x)
        return torch.cat([self.bn(chunk) for chunk in torch.tensor_split(x, n_chunks)], dim=0)


class GLULayer(nn.Module):
    """GLU(GBN(FC(x))): half of the units gate the other half."""

    def __init__(self, fc: nn.Linear, d_out: int, virtual_batch_size: int, momentum: float) -> None:
        super().__init__()
        self.fc = fc  # may be shared with the same layer of other steps
        self.bn = GhostBatchNorm(2 * d_out, virtual_batch_size, momentum)

    def forward(self, x: Tensor) -> Tensor:
        return F.glu(self.bn(self.fc(x)), dim=-1)


class FeatureTransformer(nn.Module):
    """Shared GLU layers followed by step-specific GLU layers; after the first layer each
    layer is residual, scaled by sqrt(0.5) to keep the variance stable."""

    def __init__(
        self,
        in_features: int,
        d_out: int,
        shared_fcs: nn.ModuleList,
        n_independent: int,
        virtual_batch_size: int,
        momentum: float,
    ) -> None:
        super().__init__()
        layers = [GLULayer(fc, d_out, virtual_batch_size, momentum) for fc in shared_fcs]
        for i in range(n_independent):
            d_in = in_features if (i == 0 and not layers) else d_out
            fc = nn.Linear(d_in, 2 * d_out, bias=False)
            layers.append(GLULayer(fc, d_out, virtual_batch_size, momentum))
        self.layers = nn.ModuleList(layers)
        self.scale = math.sqrt(0.5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layers[0](x)
        for layer in self.layers[1:]:
            x = (x + layer(x)) * self.scale
        return x


class AttentiveTransformer(nn.Module):
    """mask = sparsemax(prior * GBN(FC(a))): which features the next step looks at."""

    def __init__(
        self,
        n_a: int,
        in_features: int,
        virtual_batch_size: int,
        momentum: float,
        mask_type: str,
    ) -> None:
        super().__init__()
        self.fc = nn.Linear(n_a, in_features, bias=False)
        self.bn = GhostBatchNorm(in_features, virtual_batch_size, momentum)
        self.normalize = _MASK_FUNCTIONS[mask_type]

    def forward(self, a: Tensor, prior: Tensor) -> Tensor:
        return self.normalize(self.bn(self.fc(a)) * prior)


class TabNet(nn.Module):
    """TabNet encoder with a linear head.

    Each of `n_steps` decision steps picks features with a sparse mask M (rows sum to 1),
    M = sparsemax(P * h(a)), where the prior P = prod_j (gamma - M_j) discourages reusing
    features; the step's feature transformer output splits into a decision part d (n_d units,
    summed over steps through ReLU) and an attention part a (n_a units, for the next mask).
    forward returns (head(sum_steps relu(d)), sparsity_loss), where
    sparsity_loss = mean_steps mean_rows sum_features -M log(M + eps) (mask entropy).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_d: int,
        n_a: int,
        n_steps: int,
        gamma: float,
        n_shared: int,
        n_independent: int,
        virtual_batch_size: int,
        momentum: float,
        mask_type: str,
        epsilon: float = 1e-15,  # numerical floor of the mask entropy, not a setting
    ) -> None:
        super().__init__()
        if mask_type not in _MASK_FUNCTIONS:
            raise ValueError(f"mask_type={mask_type!r} is not one of {', '.join(_MASK_FUNCTIONS)}")
        if n_shared + n_independent < 1:
            raise ValueError("TabNet needs n_shared + n_independent >= 1 GLU layers")
        self.n_d, self.n_a, self.n_steps = n_d, n_a, n_steps
        self.gamma, self.epsilon = gamma, epsilon
        d_hidden = n_d + n_a
        self.input_bn = nn.BatchNorm1d(in_features, momentum=0.01)
        shared = nn.ModuleList(
            [
                nn.Linear(in_features if i == 0 else d_hidden, 2 * d_hidden, bias=False)
                for i in range(n_shared)
            ]
        )

        def feature_transformer() -> FeatureTransformer:
            return FeatureTransformer(
                in_features, d_hidden, shared, n_independent, virtual_batch_size, momentum
            )

        self.initial_transformer = feature_transformer()
        self.step_transformers = nn.ModuleList([feature_transformer() for _ in range(n_steps)])
        self.attentive = nn.ModuleList(
            [
                AttentiveTransformer(n_a, in_features, virtual_batch_size, momentum, mask_type)
                for _ in range(n_steps)
            ]
        )
        self.head = nn.Linear(n_d, out_features)

    def _encode(self, x: Tensor, keep_masks: bool) -> tuple[Tensor, Tensor, list[Tensor]]:
        x = self.input_bn(x)
        prior = torch.ones_like(x)
        a = self.initial_transformer(x)[:, self.n_d :]
        decision = x.new_zeros(x.shape[0], self.n_d)
        entropy = x.new_zeros(())
        masks: list[Tensor] = []
        for attentive, transformer in zip(self.attentive, self.step_transformers, strict=True):
            mask = attentive(a, prior)
            entropy = entropy + (-mask * torch.log(mask + self.epsilon)).sum(-1).mean()
            prior = (self.gamma - mask) * prior
            h = transformer(mask * x)
            decision = decision + F.relu(h[:, : self.n_d])
            a = h[:, self.n_d :]
            if keep_masks:
                masks.append(mask)
        return self.head(decision), entropy / self.n_steps, masks

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out, sparsity_loss, _ = self._encode(x, keep_masks=False)
        return out, sparsity_loss

    def forward_masks(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(output, masks) with masks of shape (n_steps, batch, in_features)."""
        out, _, masks = self._encode(x, keep_masks=True)
        return out, torch.stack(masks)
