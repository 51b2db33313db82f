"""Face generator (official ``Face_Enhancement`` ``SPADEGenerator``; OFFICIAL_PIPELINE.md §5.7).

One network class for both official checkpoints: ``Setting_9_epoch_100`` (``load_size`` 256) and
``FaceSR_512`` (``load_size`` 512). Their parameter shapes are identical; ``load_size`` only sets
the start grid (``load_size / 32``) and therefore the output size.

Degraded aligned face (N,3,S,S) in [-1,1] -> restored face (N,3,S,S) in (-1,1), S = ``load_size``.

Module attribute names and registration order reproduce the official state-dict keys in the
official order, so an official ``latest_net_G.pth`` loads with ``strict=True``. ``ngf`` and
``spade_hidden`` narrow the network for our own lite weights (engine.training.face_train); their
defaults are the official widths.

Inference never changes the loaded state. Training our own generator needs two things inference
must not do, both switched on explicitly by the trainer (``set_training_statistics``): batch
statistics in the normalisation layers (updating their running statistics, as the official
training did) and a power iteration per step for the spectral norms (``update_spectral_norms``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NGF = 64  # official base width
SPADE_HIDDEN = 128  # official width of the SPADE ``mlp_shared`` convolution
LRELU_SLOPE = 0.2
BN_EPS = 1e-5
BN_MOMENTUM = 0.1  # torch's and SynchronizedBatchNorm's default, used only while training
FC_CHANNELS = 16 * NGF  # 1024


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The official ``F.interpolate(..., mode="bilinear")``: align_corners False and no
    antialiasing, even for large reductions (256 -> 8). Antialiasing would change the result."""
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False)


class SpectralNormConv2d(nn.Module):
    """A 3x3 (or 1x1) convolution stored the way ``torch.nn.utils.spectral_norm`` stores it.

    The checkpoint holds ``weight_orig`` plus the power-iteration vectors ``weight_u``/``weight_v``
    (and ``bias``), never the effective weight. In eval mode torch's spectral norm does **no**
    power iteration: it divides by ``sigma = u . (W_mat v)`` computed from the *stored* u and v
    (``W_mat = weight_orig.reshape(out, -1)``). We compute exactly that in ``forward`` and never
    update u or v: an extra iteration would move sigma slightly and the output away from the
    official one, and inference must not change the loaded state either.

    Registration order (``bias`` then ``weight_orig`` as parameters, then the ``weight_u`` and
    ``weight_v`` buffers) matches the official key order, where spectral_norm re-registers the
    weight after the conv's own bias.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__()
        self.padding = kernel_size // 2
        if bias:
            self.bias = nn.Parameter(torch.zeros(c_out))
        else:
            self.register_parameter("bias", None)
        self.weight_orig = nn.Parameter(torch.empty(c_out, c_in, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight_orig, a=5 ** 0.5)
        u = F.normalize(torch.randn(c_out), dim=0, eps=1e-12)
        v = F.normalize(torch.randn(c_in * kernel_size * kernel_size), dim=0, eps=1e-12)
        self.register_buffer("weight_u", u)
        self.register_buffer("weight_v", v)

    def effective_weight(self) -> torch.Tensor:
        w = self.weight_orig
        sigma = torch.dot(self.weight_u, torch.mv(w.reshape(w.shape[0], -1), self.weight_v))
        return w / sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.effective_weight(), self.bias, padding=self.padding)

    @torch.no_grad()
    def power_iteration(self) -> None:
        """One step of torch's spectral-norm power iteration on u and v (training only): with u and
        v frozen, sigma would be an arbitrary linear function of the weight that can reach zero."""
        w = self.weight_orig.reshape(self.weight_orig.shape[0], -1)
        self.weight_v.copy_(F.normalize(torch.mv(w.t(), self.weight_u), dim=0, eps=1e-12))
        self.weight_u.copy_(F.normalize(torch.mv(w, self.weight_v), dim=0, eps=1e-12))


class StoredStatsBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d(affine=False)`` that always normalises with the stored running statistics.

    The official network uses SynchronizedBatchNorm2d (same state dict, same eval math). The pipeline
    only runs inference, and batch statistics would make a face depend on the other faces in its
    batch, so even in ``train()`` mode the stored statistics are used and never updated, unless a
    trainer of our own weights switches ``batch_statistics`` on.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=BN_EPS, momentum=BN_MOMENTUM, affine=False, track_running_stats=True)
        self.batch_statistics = False  # set only by a trainer (``set_training_statistics``)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch_statistics and self.training:  # training our own weights: normalise by the batch
            return F.batch_norm(x, self.running_mean, self.running_var, None, None, True, self.momentum, self.eps)
        return F.batch_norm(x, self.running_mean, self.running_var, None, None, False, 0.0, self.eps)


class SPADE(nn.Module):
    """Spatially-adaptive normalisation conditioned on the degraded face.

    ``out = BN(x) * (1 + gamma) + beta`` with gamma/beta predicted per pixel from the degraded face
    resized to x's size (the official ``no_parsing_map`` variant: the 18-channel label map is
    never used, so it is not an input here).
    """

    def __init__(self, channels: int, hidden: int = SPADE_HIDDEN) -> None:
        super().__init__()
        self.param_free_norm = StoredStatsBatchNorm2d(channels)
        self.mlp_shared = nn.Sequential(nn.Conv2d(3, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, degraded: torch.Tensor) -> torch.Tensor:
        normalized = self.param_free_norm(x)
        actv = self.mlp_shared(_resize(degraded, tuple(x.shape[-2:])))
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """``out = shortcut(x) + conv_1(lrelu(norm_1(conv_0(lrelu(norm_0(x))))))``.

    The shortcut is ``conv_s(norm_s(x))`` (1x1, no bias, no activation) when the width changes,
    else the identity. Attribute order (conv_0, conv_1, conv_s, norm_0, norm_1, norm_s) is the
    official key order.
    """

    def __init__(self, fin: int, fout: int, hidden: int = SPADE_HIDDEN) -> None:
        super().__init__()
        self.learned_shortcut = fin != fout
        fmid = min(fin, fout)
        self.conv_0 = SpectralNormConv2d(fin, fmid, 3)
        self.conv_1 = SpectralNormConv2d(fmid, fout, 3)
        if self.learned_shortcut:
            self.conv_s = SpectralNormConv2d(fin, fout, 1, bias=False)
        self.norm_0 = SPADE(fin, hidden)
        self.norm_1 = SPADE(fmid, hidden)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, hidden)

    def forward(self, x: torch.Tensor, degraded: torch.Tensor) -> torch.Tensor:
        x_s = self.conv_s(self.norm_s(x, degraded)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, degraded), LRELU_SLOPE))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, degraded), LRELU_SLOPE))
        return x_s + dx


class FaceGenerator(nn.Module):
    """The official SPADE face generator (``num_upsampling_layers=normal``, no VAE, no parsing map).

    ``fc`` sees only a (load_size/32)^2 thumbnail of the degraded face; every SPADE layer sees the
    degraded face again at its own resolution. Five nearest x2 upsamplings bring the grid to
    ``load_size``. The grid comes from ``load_size`` (not the input size): the input must be
    ``load_size`` square for the output to line up with it. ``ngf`` / ``spade_hidden`` set the
    widths (official: 64 / 128; our lite weights are narrower).
    """

    def __init__(self, load_size: int = 256, ngf: int = NGF, spade_hidden: int = SPADE_HIDDEN) -> None:
        super().__init__()
        if load_size % 32:
            raise ValueError(f"load_size must be a multiple of 32, got {load_size}")
        if ngf < 1 or spade_hidden < 1:
            raise ValueError(f"ngf and spade_hidden must be positive, got {ngf} and {spade_hidden}")
        self.load_size = load_size
        self.grid = load_size // 32  # sh = sw (aspect ratio 1)
        nf, hid = ngf, spade_hidden
        self.fc = nn.Conv2d(3, 16 * nf, 3, padding=1)
        self.head_0 = SPADEResnetBlock(16 * nf, 16 * nf, hid)
        self.G_middle_0 = SPADEResnetBlock(16 * nf, 16 * nf, hid)
        self.G_middle_1 = SPADEResnetBlock(16 * nf, 16 * nf, hid)
        self.up_0 = SPADEResnetBlock(16 * nf, 8 * nf, hid)
        self.up_1 = SPADEResnetBlock(8 * nf, 4 * nf, hid)
        self.up_2 = SPADEResnetBlock(4 * nf, 2 * nf, hid)
        self.up_3 = SPADEResnetBlock(2 * nf, 1 * nf, hid)
        self.conv_img = nn.Conv2d(nf, 3, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")

    def head(self, degraded: torch.Tensor) -> torch.Tensor:
        """The ``fc`` output: Conv3 on the degraded face bilinearly shrunk to the start grid."""
        return self.fc(_resize(degraded, (self.grid, self.grid)))

    def forward(self, degraded: torch.Tensor) -> torch.Tensor:
        x = self.head(degraded)
        x = self.head_0(x, degraded)
        x = self.up(x)
        x = self.G_middle_0(x, degraded)
        x = self.G_middle_1(x, degraded)
        for block in (self.up_0, self.up_1, self.up_2, self.up_3):
            x = block(self.up(x), degraded)
        return torch.tanh(self.conv_img(F.leaky_relu(x, LRELU_SLOPE)))


def set_training_statistics(net: nn.Module, on: bool) -> None:
    """Training our own generator: normalise by batch statistics (and update the running ones) while
    ``net`` is in train mode. Off (the default) every forward uses the stored statistics."""
    for module in net.modules():
        if isinstance(module, StoredStatsBatchNorm2d):
            module.batch_statistics = on


def update_spectral_norms(net: nn.Module, iterations: int = 1) -> None:
    """Power-iterate every spectral norm of ``net`` (call before each training forward, as torch's
    ``spectral_norm`` does in train mode); never called at inference."""
    for module in net.modules():
        if isinstance(module, SpectralNormConv2d):
            for _ in range(iterations):
                module.power_iteration()
