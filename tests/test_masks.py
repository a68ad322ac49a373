"""Attention masks: exact values on small cases, checked against the official construction rules."""
import numpy as np
import pytest

from unimo import masks


def test_bidirectional_with_padding():
    m = masks.bidirectional([1, 1, 0])
    assert m.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 0]]


def test_seq2seq_exact():
    # source of 2 (bidirectional), target of 3 (causal, sees the whole source), one pad position
    m = masks.seq2seq(2, 3, total_len=6)
    expected = [
        [1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 0],
    ]
    assert m.tolist() == expected


def test_image_to_text_exact():
    # 2 image rows (second is padding), 1 object tag, 3 caption tokens (last is padding)
    m = masks.image_to_text([1, 0], [1], [1, 1, 0])
    expected = [
        # img0 img1 obj c0 c1 c2
        [1, 0, 1, 0, 0, 0],   # image row: sees image + objects, never the caption
        [0, 0, 0, 0, 0, 0],   # padded image row
        [1, 0, 1, 0, 0, 0],   # object row
        [1, 0, 1, 1, 0, 0],   # caption token 0: all valid image/obj + itself
        [1, 0, 1, 1, 1, 0],   # caption token 1: causal
        [0, 0, 0, 0, 0, 0],   # padded caption row
    ]
    assert m.tolist() == expected


def test_cross_modal_and_decode_row():
    m = masks.cross_modal([1, 1], [1, 0])
    assert m.tolist() == [[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]]
    assert masks.decode_step_row([1, 1, 0], 2).tolist() == [[1, 1, 0, 1, 1]]


def test_pad_and_stack():
    out = masks.pad_and_stack([np.ones((2, 2)), np.ones((3, 3))])
    assert out.shape == (2, 3, 3)
    assert out[0].tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 0]]


def test_bidirectional_batch_equals_the_per_row_and_broadcast_constructions():
    """The tasks' padded-batch masks (text understanding, [image ; text] pairs, decoding sources) used to be built
    by hand as valid[:, :, None] * valid[:, None, :]: same values and dtype, and each row is bidirectional(row)."""
    rng = np.random.default_rng(0)
    valid = (rng.random((4, 7)) < 0.7).astype(np.float32)
    valid[:, 0] = 1.0
    out = masks.bidirectional_batch(valid)
    assert out.dtype == np.float32 and out.shape == (4, 7, 7)
    np.testing.assert_array_equal(out, valid[:, :, None] * valid[:, None, :])
    np.testing.assert_array_equal(out, np.stack([masks.bidirectional(v) for v in valid]))
    # image + text validity concatenated (MultimodalTask.pack) is the cross-modal mask of each example
    img, txt = valid[:, :3], valid[:, 3:]
    np.testing.assert_array_equal(out, np.stack([masks.cross_modal(i, t) for i, t in zip(img, txt)]))
    assert masks.bidirectional_batch([[1, 1, 0]]).tolist() == [[[1, 1, 0], [1, 1, 0], [0, 0, 0]]]
    with pytest.raises(ValueError, match="batch, length"):
        masks.bidirectional_batch([1, 1, 0])
