"""Region-feature extractors (classic, grid) and the ``preprocess.extract_features`` CLI."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from preprocess import extract_features
from preprocess.extractors import ExtractorError, available_backends, box_iou, create_extractor, nms
from preprocess.extractors.classic import CLASSIC_PROJECTION_SEED, RAW_DIM, ClassicExtractor, _CENTER, _SCALE
from unimo.reader.features import FeatureStore

COLOURS = [(40, 40, 215), (50, 170, 40), (210, 80, 30), (30, 215, 235), (160, 40, 140), (20, 20, 20)]


def synthetic_image(seed: int, size: tuple[int, int] = (128, 128), textured: bool = False):
    """Random shapes on a noisy background; ground-truth boxes come from each shape's own drawn mask."""
    rng = np.random.default_rng(seed)
    h, w = size
    base = rng.integers(150, 235, 3).astype(np.float32)
    img = np.broadcast_to(base, (h, w, 3)).copy()
    if textured:  # a background that is not flat: gradient + blotches
        img += np.linspace(-30, 30, w, dtype=np.float32)[None, :, None]
        img += cv2.GaussianBlur(rng.normal(0, 25, (h, w, 3)).astype(np.float32), (0, 0), 6)
    img += rng.normal(0, 3, img.shape).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    boxes, placed = [], []
    scale = min(h, w)
    for _ in range(int(rng.integers(2, 5))):
        for _attempt in range(50):
            r = float(rng.uniform(0.08, 0.16)) * scale
            cx, cy = rng.uniform(r + 2, w - r - 2), rng.uniform(r + 2, h - r - 2)
            if all(math.hypot(cx - px, cy - py) > r + pr + 6 for px, py, pr in placed):
                break
        else:
            continue
        placed.append((cx, cy, r))
        mask = np.zeros((h, w), np.uint8)
        kind = int(rng.integers(3))
        if kind == 0:
            cv2.circle(mask, (int(cx), int(cy)), int(r), 255, -1)
        elif kind == 1:
            cv2.rectangle(mask, (int(cx - r), int(cy - 0.7 * r)), (int(cx + r), int(cy + 0.7 * r)), 255, -1)
        else:
            pts = np.array([[cx, cy - r], [cx + r, cy + r * 0.8], [cx - r, cy + r * 0.8]], np.int32)
            cv2.fillPoly(mask, [pts], 255)
        img[mask > 0] = COLOURS[int(rng.integers(len(COLOURS)))]
        x, y, bw, bh = cv2.boundingRect(mask)
        boxes.append([x, y, x + bw, y + bh])
    return img, np.asarray(boxes, dtype=np.float32)


def test_box_utilities_hand_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 0.0, 1.0]])
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 9, 10]])
    # 1 overlaps 0 with IoU 0.81 (suppressed), 3 overlaps 0 with IoU 0.9 but 3 scores highest
    keep = nms(boxes, np.array([0.9, 0.8, 0.5, 0.95]), iou_threshold=0.7)
    assert keep.tolist() == [3, 2]


def test_registry():
    assert {"classic", "grid"} <= set(available_backends())
    with pytest.raises(ExtractorError, match="unknown extractor backend 'nope'"):
        create_extractor("nope")


def test_classic_boxes_cover_drawn_objects():
    ex = create_extractor("classic", feature_dim=2048, max_boxes=36, min_boxes=10)
    found = total = 0
    for seed in range(20):
        img, gt = synthetic_image(seed)
        r = ex.extract(img)
        best = box_iou(gt, r.boxes).max(axis=1)
        found += int((best > 0.5).sum())
        total += len(gt)
        assert 10 <= len(r) <= 36
        assert r.features.shape == (len(r), 2048) and r.features.dtype == np.float32
        assert (r.boxes[:, 0] >= 0).all() and (r.boxes[:, 2] <= 128).all()
        assert (r.boxes[:, 2] > r.boxes[:, 0]).all() and (r.boxes[:, 3] > r.boxes[:, 1]).all()
        assert (r.obj_conf >= 0).all() and (r.obj_conf <= 1).all()
        assert np.isfinite(r.features).all()
    assert found / total >= 0.95, f"only {found}/{total} objects have a box with IoU > 0.5"


def test_classic_on_textured_background_and_large_image():
    # a 640x480 image takes the downscaling path; boxes come back in original pixels
    found = total = 0
    for seed in range(6):
        img, gt = synthetic_image(100 + seed, size=(480, 640), textured=True)
        r = ClassicExtractor(feature_dim=32).extract(img)
        assert r.boxes[:, 2].max() <= 640 and r.boxes[:, 3].max() <= 480
        assert r.boxes[:, 2].max() > 320  # really in original coordinates, not the 320-px working copy
        found += int((box_iou(gt, r.boxes).max(axis=1) > 0.5).sum())
        total += len(gt)
    assert found / total >= 0.8, f"{found}/{total}"


def test_classic_deterministic_and_dimension():
    img, _ = synthetic_image(3)
    a = ClassicExtractor(feature_dim=64, max_boxes=12, min_boxes=5).extract(img)
    b = ClassicExtractor(feature_dim=64, max_boxes=12, min_boxes=5).extract(img.copy())
    assert a.features.shape[1] == 64 and 5 <= len(a) <= 12
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.obj_conf, b.obj_conf)


def test_classic_projection_uses_documented_seed():
    rng = np.random.default_rng(CLASSIC_PROJECTION_SEED)
    weight = rng.standard_normal((RAW_DIM, 16)).astype(np.float32)
    raw = np.random.default_rng(1).random((3, RAW_DIM)).astype(np.float32)
    expected = ((raw - _CENTER) * _SCALE) @ weight
    np.testing.assert_allclose(ClassicExtractor(feature_dim=16).project(raw), expected, rtol=1e-6, atol=1e-6)


def test_classic_descriptor_separates_colour_and_shape():
    # same box, same shape, different colour -> hue histogram differs; different shape -> 8x8 mask differs
    def one(shape, colour):
        img = np.full((64, 64, 3), 210, np.uint8)
        if shape == "circle":
            cv2.circle(img, (32, 32), 20, colour, -1)
        else:
            cv2.rectangle(img, (12, 12), (52, 52), colour, -1)
        return ClassicExtractor(feature_dim=8).raw_descriptors(img, [[10, 10, 54, 54]])[0]

    red_c, blue_c, red_s = one("circle", (40, 40, 215)), one("circle", (210, 80, 30)), one("square", (40, 40, 215))
    hue = slice(11, 23)
    # BGR (40,40,215): hue 0 -> bin 0. BGR (210,80,30): hue = 240 + 60*(30-80)/180 = 223.3 deg = 111.7 in
    # OpenCV's 0..180 scale -> bin int(111.7 * 12 / 180) = 7
    assert red_c[hue].argmax() == 0 and blue_c[hue].argmax() == 7
    # saturation-weighted mass: S = (215-40)/215 = 0.814 and (210-30)/210 = 0.857 (all pixels in one bin)
    assert red_c[11] == pytest.approx(175 / 215, abs=0.01) and blue_c[18] == pytest.approx(180 / 210, abs=0.01)
    # 8x8 foreground grid over the 44-px box (cells of 5.5 px): the square covers box pixels 2..42, so the first
    # row/column cells are (5.5-2)/5.5 full, the last ones (5.5-1)/5.5, corners the products, the inside 1
    sq = red_s[26:90].reshape(8, 8)
    np.testing.assert_allclose(sq[1:7, 1:7], 1.0)
    np.testing.assert_allclose([sq[0, 3], sq[7, 3], sq[0, 0], sq[7, 7], sq[0, 7]],
                               [3.5 / 5.5, 4.5 / 5.5, (3.5 / 5.5) ** 2, (4.5 / 5.5) ** 2, 3.5 * 4.5 / 5.5 ** 2],
                               rtol=1e-5)
    circ = red_c[26:90].reshape(8, 8)
    assert circ[0, 0] < 0.05 and circ[3:5, 3:5].min() == 1.0  # a circle leaves the corners empty


def test_classic_input_variants_and_bad_options():
    img, _ = synthetic_image(5)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)
    ex = ClassicExtractor(feature_dim=16)
    assert len(ex.extract(gray)) >= 10
    np.testing.assert_array_equal(ex.extract(bgra).features, ex.extract(img).features)
    tiny = ex.extract(np.full((8, 8, 3), 128, np.uint8))
    assert len(tiny) == 10  # padded up to min_boxes with the whole image
    with pytest.raises(ValueError, match="uint8"):
        ex.extract(img.astype(np.float32))
    with pytest.raises(ExtractorError, match="min_boxes"):
        ClassicExtractor(min_boxes=20, max_boxes=10)


# ------------------------------------------------------------------------------------------------ CLI

@pytest.fixture()
def image_dir(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(3):
        img, _ = synthetic_image(10 + i)
        cv2.imwrite(str(d / f"COCO_val2014_{i + 7:012d}.png"), img)
    (d / "notes.txt").write_text("not an image")
    return d


def test_cli_writes_store(image_dir, tmp_path, capsys):
    out = tmp_path / "store"
    summary = extract_features.main(["--images", str(image_dir), "--output", str(out), "--feature-dim", "32",
                                     "--image-id-regex", r"(\d+)$", "--no-progress"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == summary
    assert summary["images_written"] == 3 and summary["ignored_files"] == 1 and summary["skipped"] == {}
    store = FeatureStore.open(out)
    assert sorted(store.image_ids()) == ["7", "8", "9"]
    direct = ClassicExtractor(feature_dim=32).extract(cv2.imread(str(image_dir / "COCO_val2014_000000000008.png")))
    rec = store["8"]
    assert (rec.image_w, rec.image_h) == (128, 128)
    np.testing.assert_array_equal(rec.features, direct.features)
    np.testing.assert_array_equal(rec.boxes, direct.boxes)
    np.testing.assert_array_equal(rec.obj_conf, direct.obj_conf)
    assert summary["boxes"] == sum(store.num_boxes(i) for i in store.image_ids())


def test_cli_fp16_store(image_dir, tmp_path):
    out = tmp_path / "half"
    extract_features.main(["--images", str(image_dir), "--output", str(out), "--feature-dim", "32", "--fp16",
                           "--no-progress"])
    store = FeatureStore.open(out)
    assert store.dtype == "float16"
    rec = store["COCO_val2014_000000000007"]
    direct = ClassicExtractor(feature_dim=32).extract(cv2.imread(str(image_dir / "COCO_val2014_000000000007.png")))
    np.testing.assert_allclose(rec.features, direct.features, rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(rec.boxes, direct.boxes)  # boxes stay float32


def test_cli_bad_image_fails_or_is_counted(image_dir, tmp_path, capsys):
    (image_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "store"
    with pytest.raises(SystemExit) as exc:
        extract_features.main(["--images", str(image_dir), "--output", str(out), "--feature-dim", "16",
                               "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "not a decodable image" in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".store")]
    summary = extract_features.main(["--images", str(image_dir), "--output", str(out), "--feature-dim", "16",
                                     "--skip-bad", "--no-progress", "--summary", str(tmp_path / "s.json")])
    assert summary["skipped"] == {"unreadable": 1} and summary["images_written"] == 3
    assert summary["bad_files"][0]["file"].endswith("broken.jpg")
    assert json.loads((tmp_path / "s.json").read_text()) == summary
    assert len(FeatureStore.open(out)) == 3


def test_cli_duplicate_ids_and_existing_output(image_dir, tmp_path, capsys):
    img, _ = synthetic_image(1)
    cv2.imwrite(str(image_dir / "x_000000000007.jpg"), img)  # same id 7 as a png under the regex
    out = tmp_path / "store"
    with pytest.raises(SystemExit):
        extract_features.main(["--images", str(image_dir), "--output", str(out), "--feature-dim", "8",
                               "--image-id-regex", r"(\d+)$", "--no-progress"])
    assert "image id '7' already used" in capsys.readouterr().err
    out.mkdir()
    with pytest.raises(SystemExit):
        extract_features.main(["--images", str(image_dir), "--output", str(out), "--no-progress"])
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        extract_features.main(["--images", str(tmp_path / "missing"), "--output", str(tmp_path / "o")])
    assert "image directory not found" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ grid

GRID_ARGS = ["--backend", "grid", "--arch", "resnet18", "--feature-dim", "512", "--grid-size", "2",
             "--input-size", "64", "--no-progress"]


def test_grid_refuses_without_weights(image_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        extract_features.main(["--images", str(image_dir), "--output", str(tmp_path / "g"), *GRID_ARGS])
    err = capsys.readouterr().err
    assert "needs backbone weights" in err and "--weights" in err
    assert not (tmp_path / "g").exists()
    with pytest.raises(ExtractorError, match="has 512 channels"):
        create_extractor("grid", arch="resnet18", feature_dim=2048, random_init=True)
    with pytest.raises(ExtractorError, match="weights file not found"):
        create_extractor("grid", weights=str(tmp_path / "none.pdparams"))
    with pytest.raises(ExtractorError, match="--max-boxes is 36"):
        create_extractor("grid", random_init=True, max_boxes=36)


def test_grid_random_init_and_weights_file(image_dir, tmp_path):
    import paddle
    from paddle.vision import models

    from preprocess.extractors.grid import RANDOM_INIT_SEED

    out = tmp_path / "g"
    summary = extract_features.main(["--images", str(image_dir), "--output", str(out), "--random-init", *GRID_ARGS])
    assert summary["boxes_per_image"] == {"min": 5, "mean": 5.0, "max": 5}
    store = FeatureStore.open(out)
    rec = store[store.image_ids()[0]]
    assert rec.features.shape == (5, 512)
    np.testing.assert_array_equal(rec.boxes[0], [0, 0, 128, 128])
    np.testing.assert_array_equal(rec.boxes[4], [64, 64, 128, 128])
    # whole-image row = mean of the feature map = mean of the 4 equal cells (the 2x2 map splits evenly)
    np.testing.assert_allclose(rec.features[0], rec.features[1:].mean(axis=0), rtol=1e-4, atol=1e-4)

    # the same weights given as a file give the same features (the file is really loaded)
    paddle.seed(RANDOM_INIT_SEED)
    net = models.resnet18(pretrained=False)
    weights = tmp_path / "r18.pdparams"
    paddle.save(net.state_dict(), str(weights))
    out2 = tmp_path / "g2"
    extract_features.main(["--images", str(image_dir), "--output", str(out2), "--weights", str(weights),
                           *GRID_ARGS])
    rec2 = FeatureStore.open(out2)[rec.image_id]
    np.testing.assert_allclose(rec2.features, rec.features, rtol=1e-5, atol=1e-5)

    # weights of another architecture are refused with the mismatch named
    bad = tmp_path / "r34.pdparams"
    paddle.save(models.resnet34(pretrained=False).state_dict(), str(bad))
    with pytest.raises(ExtractorError, match="do not fit paddle.vision resnet18"):
        create_extractor("grid", arch="resnet18", feature_dim=512, weights=str(bad), grid_size=2,
                         input_size=64).extract(np.zeros((64, 64, 3), np.uint8))
