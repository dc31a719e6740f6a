import math

import numpy as np
import pytest

from reproduce import metrics
from reproduce.metrics import (
    CLASS_NAMES,
    NUM_CLASSES,
    LBMIoU,
    ValMIoU,
    confusion_matrix,
    iou_per_class,
    lb_image_miou,
    mean_iou,
    submission_row,
)

TRUE_4x4 = np.array(
    [
        [0, 0, 1, 1],
        [0, 0, 1, 1],
        [2, 2, 2, 2],
        [2, 2, 2, 2],
    ]
)
PRED_4x4 = np.array(
    [
        [0, 1, 1, 1],
        [0, 0, 1, 1],
        [2, 2, 0, 2],
        [2, 2, 2, 2],
    ]
)


def test_class_names_keep_original_spelling():
    assert NUM_CLASSES == 12 == len(CLASS_NAMES)
    assert CLASS_NAMES[0] == "Backgroud"
    assert CLASS_NAMES[1] == "UNKNOWN"
    assert CLASS_NAMES[-1] == "Clothing"


def test_confusion_matrix_hand_computed():
    cm = confusion_matrix(PRED_4x4, TRUE_4x4, num_classes=3)
    # rows = truth, columns = prediction
    assert cm.tolist() == [[3, 1, 0], [0, 4, 0], [1, 0, 7]]
    assert cm.dtype == np.int64


def test_iou_and_miou_hand_computed():
    cm = confusion_matrix(PRED_4x4, TRUE_4x4, num_classes=3)
    # IoU0 = 3/(4+4-3), IoU1 = 4/(4+5-4), IoU2 = 7/(8+7-7)
    assert iou_per_class(cm) == pytest.approx([0.6, 0.8, 0.875])
    assert mean_iou(cm) == pytest.approx((0.6 + 0.8 + 0.875) / 3)


def test_class_absent_from_both_is_skipped():
    cm = confusion_matrix(PRED_4x4, TRUE_4x4, num_classes=5)
    iou = iou_per_class(cm)
    assert math.isnan(iou[3]) and math.isnan(iou[4])
    assert mean_iou(cm) == pytest.approx((0.6 + 0.8 + 0.875) / 3)


def test_class_only_predicted_counts_as_zero():
    true = np.zeros((2, 2), int)
    pred = np.array([[0, 0], [0, 1]])
    iou = iou_per_class(confusion_matrix(pred, true, num_classes=3))
    assert iou[0] == pytest.approx(0.75)
    assert iou[1] == 0.0
    assert math.isnan(iou[2])


def test_all_classes_absent_gives_nan():
    assert math.isnan(mean_iou(np.zeros((12, 12), np.int64)))


def test_truth_outside_range_is_ignored():
    true = TRUE_4x4.copy()
    pred = PRED_4x4.copy()
    # Hide the two wrong pixels behind ignore labels: everything left is right.
    true[0, 1] = 255
    true[2, 2] = -1
    cm = confusion_matrix(pred, true, num_classes=3)
    assert cm.tolist() == [[3, 0, 0], [0, 4, 0], [0, 0, 7]]
    assert mean_iou(cm) == 1.0


def test_prediction_outside_range_is_an_error():
    with pytest.raises(ValueError):
        confusion_matrix(np.full((2, 2), 12), np.zeros((2, 2), int))


def test_set_metric_differs_from_mean_of_images():
    true = np.array([[[0, 0], [0, 0]], [[1, 1], [1, 1]]])
    pred = np.array([[[0, 0], [0, 0]], [[1, 0], [0, 0]]])
    val = ValMIoU()
    val.update(pred, true)
    # One matrix over both images: [[4, 0], [3, 1]] -> (4/7 + 1/4) / 2.
    assert val.compute()["miou"] == pytest.approx((4 / 7 + 1 / 4) / 2)
    lb = LBMIoU()
    lb.update(pred, true)
    # Image A alone: 1.0. Image B alone: IoU0 = 0, IoU1 = 1/4 -> 0.125.
    assert lb.compute() == pytest.approx((1.0 + 0.125) / 2)


def test_val_miou_accumulates_over_batches_and_names_classes():
    val = ValMIoU()
    val.update(PRED_4x4[:2][None], TRUE_4x4[:2][None])
    val.update(PRED_4x4[2:], TRUE_4x4[2:])  # a single (H, W) mask also works
    result = val.compute()
    assert result["miou"] == pytest.approx((0.6 + 0.8 + 0.875) / 3)
    assert set(result["per_class"]) == set(CLASS_NAMES)
    assert result["per_class"]["Paper"] is None
    assert result["per_class"]["General trash"] == pytest.approx(0.875)


def test_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    val = ValMIoU()
    val.update(torch.from_numpy(PRED_4x4)[None], torch.from_numpy(TRUE_4x4)[None])
    assert val.compute()["miou"] == pytest.approx((0.6 + 0.8 + 0.875) / 3)


# --- an independent implementation: plain Python, no numpy arithmetic ---------


def _py_resize(mask: list[list[int]], size: int = 256) -> list[list[int]]:
    # Nearest neighbour as OpenCV does it: source index = floor(dst * src / dst_size).
    # The sizes used below divide exactly or do not hit OpenCV's float rounding ties.
    h, w = len(mask), len(mask[0])
    return [[mask[(i * h) // size][(j * w) // size] for j in range(size)] for i in range(size)]


def _py_miou(pairs: list[tuple[list[list[int]], list[list[int]]]], n: int = 12) -> float:
    truth = {c: set() for c in range(n)}
    predicted = {c: set() for c in range(n)}
    for k, (pred, true) in enumerate(pairs):
        for i, row in enumerate(true):
            for j, t in enumerate(row):
                if 0 <= t < n:
                    truth[t].add((k, i, j))
                    predicted[pred[i][j]].add((k, i, j))
    ious = []
    for c in range(n):
        union = truth[c] | predicted[c]
        if union:
            ious.append(len(truth[c] & predicted[c]) / len(union))
    return sum(ious) / len(ious)


def _random_pair(rng, h, w, ignore=False):
    # Few classes and blocky regions so that IoUs are neither all 0 nor all 1.
    true = rng.integers(0, 5, (h // 4 + 1, w // 4 + 1)).repeat(4, 0).repeat(4, 1)[:h, :w]
    pred = true.copy()
    flip = rng.random((h, w)) < 0.3
    pred[flip] = rng.integers(0, 12, flip.sum())
    if ignore:
        true = true.copy()
        true[rng.random((h, w)) < 0.05] = 255
    return pred, true


def test_val_miou_matches_plain_python():
    rng = np.random.default_rng(1)
    pairs = [_random_pair(rng, 37, 53, ignore=True) for _ in range(3)]
    val = ValMIoU()
    for pred, true in pairs:
        val.update(pred, true)
    expected = _py_miou([(p.tolist(), t.tolist()) for p, t in pairs])
    assert abs(val.compute()["miou"] - expected) < 1e-12


@pytest.mark.parametrize("shape", [(512, 512), (70, 100), (256, 256)])
def test_lb_miou_matches_plain_python(shape):
    rng = np.random.default_rng(2)
    pairs = [_random_pair(rng, *shape) for _ in range(2)]
    lb = LBMIoU()
    lb.update(np.stack([p for p, _ in pairs]), np.stack([t for _, t in pairs]))
    per_image = [_py_miou([(_py_resize(p.tolist()), _py_resize(t.tolist()))]) for p, t in pairs]
    for got, want in zip(lb.scores, per_image):
        assert abs(got - want) < 1e-12
    assert abs(lb.compute() - sum(per_image) / len(per_image)) < 1e-12
    assert lb_image_miou(*pairs[0]) == lb.scores[0]


def test_submission_row_is_256_nearest_row_major():
    rng = np.random.default_rng(3)
    pred = rng.integers(0, 12, (512, 512))
    values = submission_row(pred).split(" ")
    assert len(values) == 256 * 256
    expected = [v for row in _py_resize(pred.tolist()) for v in row]
    assert [int(v) for v in values] == expected
    # Row-major: the second value is pixel (0, 1), i.e. source (0, 2), not (2, 0).
    assert int(values[1]) == pred[0, 2]


def test_metrics_module_does_not_need_torch():
    source = open(metrics.__file__).read()
    assert "import torch" not in source
