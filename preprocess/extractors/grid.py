"""``grid`` backend: a paddle.vision ResNet's last feature map average-pooled over the whole image and a GxG grid.

Grid features (as in "In Defense of Grid Features for VQA", Jiang et al. 2020) need no detector, only an
ImageNet-style backbone. Weights come from ``--weights PATH`` (a ``paddle.vision.models.resnet*`` state dict, e.g.
the ``resnet50.pdparams`` of Paddle's model zoo); the classifier ``fc.*`` entries are ignored if present. Without
weights the backend refuses to run unless ``random_init=True`` (tests only: random features carry little meaning).

Regions: the whole image first, then the G*G cells row by row; boxes are the cells in image pixels. The image is
resized (aspect kept) so its shorter side is ``input_size``, the longer side capped at ``2 * input_size``, both
rounded to multiples of 32, and normalised with the ImageNet mean/std in RGB order.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np

from .base import Extraction, ExtractorError, RegionExtractor, register_backend

ARCH_CHANNELS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048, "resnet152": 2048}
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255.0
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255.0
RANDOM_INIT_SEED = 1234  # paddle.seed used for --random-init, so test runs are reproducible


@register_backend("grid")
class GridExtractor(RegionExtractor):
    def __init__(self, feature_dim: int = 2048, max_boxes: int | None = None, min_boxes: int | None = None,
                 weights: str | None = None, random_init: bool = False, arch: str = "resnet50",
                 grid_size: int = 6, input_size: int = 448, fp16: bool = False, **unused) -> None:
        if arch not in ARCH_CHANNELS:
            raise ExtractorError(f"unknown --arch {arch!r}; choose one of {', '.join(ARCH_CHANNELS)}")
        if feature_dim != ARCH_CHANNELS[arch]:
            raise ExtractorError(f"--feature-dim {feature_dim} does not match {arch}, whose feature map has "
                                 f"{ARCH_CHANNELS[arch]} channels; pass --feature-dim {ARCH_CHANNELS[arch]}")
        if grid_size < 1:
            raise ExtractorError(f"grid_size must be >= 1, got {grid_size}")
        n_regions = grid_size * grid_size + 1
        if max_boxes is not None and max_boxes < n_regions:
            raise ExtractorError(f"the grid backend returns {n_regions} regions (whole image + {grid_size}x"
                                 f"{grid_size} cells) but --max-boxes is {max_boxes}; raise --max-boxes or lower "
                                 f"--grid-size")
        if min_boxes is not None and min_boxes > n_regions:
            raise ExtractorError(f"--min-boxes {min_boxes} exceeds the {n_regions} grid regions")
        if input_size < 32:
            raise ExtractorError(f"input_size must be >= 32, got {input_size}")
        if weights is None and not random_init:
            raise ExtractorError("the grid backend needs backbone weights: pass --weights PATH (a paddle.vision "
                                 f"{arch} state dict, e.g. Paddle's {arch}.pdparams); --random-init exists for "
                                 "tests only and gives meaningless features")
        if weights is not None and not Path(weights).is_file():
            raise ExtractorError(f"weights file not found: {weights}")
        self.feature_dim = int(feature_dim)
        self.arch = arch
        self.grid_size = int(grid_size)
        self.input_size = int(input_size)
        self.weights = weights
        self.random_init = weights is None
        self.fp16 = bool(fp16)
        self._model = None

    def describe(self) -> dict:
        return {**super().describe(), "arch": self.arch, "grid_size": self.grid_size, "input_size": self.input_size,
                "weights": str(self.weights) if self.weights else "random-init"}

    def _build(self):
        import paddle  # heavy: only when the backend actually runs
        from paddle.vision import models

        if self.random_init:
            paddle.seed(RANDOM_INIT_SEED)
        net = getattr(models, self.arch)(pretrained=False)
        if self.weights is not None:
            try:
                state = paddle.load(str(self.weights))
            except Exception as exc:  # paddle raises several types for a corrupt/foreign file
                raise ExtractorError(f"cannot load weights {self.weights}: {exc}") from exc
            if not isinstance(state, dict):
                raise ExtractorError(f"weights {self.weights} are not a state dict (got {type(state).__name__})")
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            expected = {k for k in net.state_dict() if not k.startswith("fc.")}
            missing = sorted(expected - set(state))
            unexpected = sorted(set(state) - expected)
            if missing or unexpected:
                raise ExtractorError(f"weights {self.weights} do not fit paddle.vision {self.arch}: "
                                     f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected "
                                     f"(e.g. {unexpected[:3]})")
            own = net.state_dict()
            # the classifier is unused: keep the network's own fc so set_state_dict loads everything silently
            state.update({k: v for k, v in own.items() if k.startswith("fc.")})
            for key, value in state.items():
                if tuple(value.shape) != tuple(own[key].shape):
                    raise ExtractorError(f"weights {self.weights}: {key} has shape {list(value.shape)}, "
                                         f"{self.arch} expects {list(own[key].shape)}")
            net.set_state_dict(state)
        net.eval()
        body = paddle.nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                                    net.layer1, net.layer2, net.layer3, net.layer4)
        self._use_amp = self.fp16 and paddle.device.is_compiled_with_cuda() and \
            paddle.device.get_device().startswith("gpu")
        if self.fp16 and not self._use_amp:
            warnings.warn("--fp16: no GPU, the backbone runs in float32 (features are still stored as float16)")
        self._model = body

    def _resize(self, h: int, w: int) -> tuple[int, int]:
        scale = self.input_size / min(h, w)
        scale = min(scale, 2 * self.input_size / max(h, w))
        return max(32, int(round(h * scale / 32)) * 32), max(32, int(round(w * scale / 32)) * 32)

    def extract(self, image_bgr: np.ndarray) -> Extraction:
        import paddle
        import paddle.nn.functional as F

        if self._model is None:
            self._build()
        if image_bgr.ndim == 2:
            image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
        elif image_bgr.ndim == 3 and image_bgr.shape[2] == 4:
            image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_BGRA2BGR)
        h0, w0 = image_bgr.shape[:2]
        rh, rw = self._resize(h0, w0)
        rgb = cv2.cvtColor(cv2.resize(image_bgr, (rw, rh), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
        x = ((rgb.astype(np.float32) - _MEAN) / _STD).transpose(2, 0, 1)[None]
        with paddle.no_grad():
            if self._use_amp:
                with paddle.amp.auto_cast(dtype="float16"):
                    fmap = self._model(paddle.to_tensor(x))
            else:
                fmap = self._model(paddle.to_tensor(x))
            fmap = fmap.astype("float32")
            cells = F.adaptive_avg_pool2d(fmap, self.grid_size)  # [1, C, G, G]
            whole = fmap.mean(axis=[2, 3])  # [1, C]
        g = self.grid_size
        cell_feats = cells.numpy()[0].reshape(self.feature_dim, g * g).T
        features = np.concatenate([whole.numpy(), cell_feats]).astype(np.float32)
        if not np.isfinite(features).all():
            raise ExtractorError("the backbone produced non-finite features (bad weights?)")
        xs, ys = np.linspace(0, w0, g + 1), np.linspace(0, h0, g + 1)
        boxes = [[0.0, 0.0, float(w0), float(h0)]]
        boxes += [[xs[c], ys[r], xs[c + 1], ys[r + 1]] for r in range(g) for c in range(g)]
        return Extraction(np.asarray(boxes, dtype=np.float32), features)
