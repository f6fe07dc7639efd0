"""JaggedTensor / KeyedJaggedTensor: construction, round trips, validation, torchrec layout."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shopml.jagged import JaggedTensor, KeyedJaggedTensor, checks_enabled, content_checks_on


def _jt(lengths, d=3, dtype=torch.float32, offsets_dtype=torch.int64):
    lengths_t = torch.tensor(lengths, dtype=offsets_dtype)
    values = torch.randn(int(lengths_t.sum()), d, dtype=dtype)
    return JaggedTensor.from_lengths(values, lengths_t)


def test_from_lengths_offsets_and_max_seqlen():
    jt = _jt([2, 0, 3])
    assert jt.offsets.tolist() == [0, 2, 2, 5]
    assert jt.max_seqlen == 3
    assert jt.batch_size == 3 and len(jt) == 3 and jt.total == 5
    assert jt.lengths().tolist() == [2, 0, 3]
    assert jt[1].shape == (0, 3)
    assert torch.equal(jt[-1], jt.values[2:5])


@pytest.mark.parametrize("offsets_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize(
    "lengths", [[0], [1], [0, 0], [3, 3, 3], [1, 0, 5, 2], [17, 1, 0, 2], [0, 1, 40, 1]]
)
def test_padded_round_trip(lengths, offsets_dtype):
    jt = _jt(lengths, offsets_dtype=offsets_dtype)
    dense = jt.to_padded()
    assert dense.shape == (len(lengths), max(lengths), 3)
    for i, n in enumerate(lengths):
        assert torch.equal(dense[i, :n], jt[i])
        assert torch.all(dense[i, n:] == 0)
    back = JaggedTensor.from_padded(dense, jt.lengths())
    assert torch.equal(back.values, jt.values)
    assert torch.equal(back.offsets.long(), jt.offsets.long())


def test_to_padded_pad_value_and_truncation():
    jt = _jt([1, 4])
    dense = jt.to_padded(max_len=2, pad_value=-7.0)
    assert dense.shape == (2, 2, 3)
    assert torch.all(dense[0, 1] == -7.0)
    assert torch.equal(dense[1], jt[1][:2])


def test_all_lengths_equal_is_a_reshape():
    values = torch.randn(12, 5)
    jt = JaggedTensor.from_lengths(values, torch.tensor([4, 4, 4]))
    assert torch.equal(jt.to_padded(), values.view(3, 4, 5))


def test_padding_mask_and_split():
    jt = _jt([2, 0, 1])
    assert jt.padding_mask().tolist() == [[True, True], [False, False], [True, False]]
    assert [s.shape[0] for s in jt.split()] == [2, 0, 1]
    assert [s.shape[0] for s in jt] == [2, 0, 1]


def test_from_list_and_multidim_values():
    seqs = [torch.randn(2, 2, 3), torch.randn(0, 2, 3), torch.randn(1, 2, 3)]
    jt = JaggedTensor.from_list(seqs)
    assert jt.values.shape == (3, 2, 3)
    assert jt.to_padded().shape == (3, 2, 2, 3)
    assert torch.equal(jt.to_padded()[2, 0], seqs[2][0])


def test_to_changes_dtype_of_values_only():
    jt = _jt([2, 1], offsets_dtype=torch.int32)
    half = jt.to(torch.float64)
    assert half.values.dtype == torch.float64
    assert half.offsets.dtype == torch.int32
    assert half.max_seqlen == 2


def test_with_values_keeps_offsets_and_checks_rows():
    jt = _jt([2, 1])
    assert jt.with_values(torch.zeros(3)).offsets is jt.offsets
    with pytest.raises(ValueError, match="values: expected 3 rows"):
        jt.with_values(torch.zeros(4))


def test_to_padded_gradient_flows_to_values():
    jt = _jt([2, 0, 3])
    jt.values.requires_grad_(True)
    jt.to_padded(max_len=2).sum().backward()
    # rows past max_len (the third row of sequence 2) get zero gradient
    assert jt.values.grad[:, 0].tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize(
    ("offsets", "match"),
    [
        ([1, 2, 3], r"offsets\[0\] == 0, found 1"),
        ([0, 3, 2], r"non-decreasing offsets, found offsets\[2\] = 2 < offsets\[1\] = 3"),
        ([0, 1, 2], r"offsets\[-1\] == number of value rows \(3\), found 2"),
    ],
)
def test_validate_rejects_bad_offsets(offsets, match):
    jt = JaggedTensor(torch.zeros(3, 2), torch.tensor(offsets))
    with pytest.raises(ValueError, match=match):
        jt.validate()


def test_validate_rejects_max_seqlen_too_small():
    jt = JaggedTensor(torch.zeros(3, 2), torch.tensor([0, 3]), max_seqlen=2)
    with pytest.raises(
        ValueError, match="max_seqlen: expected every sequence length <= 2, found a length 3"
    ):
        jt.validate()
    assert JaggedTensor(torch.zeros(3, 2), torch.tensor([0, 3]), 3).validate().max_seqlen == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"values": [1.0], "offsets": torch.tensor([0, 1])}, "values: expected a torch.Tensor"),
        ({"values": torch.zeros(()), "offsets": torch.tensor([0])}, "values: expected at least 1"),
        ({"values": torch.zeros(2), "offsets": torch.tensor([[0, 2]])}, "offsets: expected a 1-D"),
        (
            {"values": torch.zeros(2), "offsets": torch.tensor([0.0, 2.0])},
            "offsets: expected dtype",
        ),
        (
            {"values": torch.zeros(2), "offsets": torch.zeros(0, dtype=torch.int64)},
            "offsets: expected B",
        ),
        (
            {"values": torch.zeros(2), "offsets": torch.tensor([0, 2]), "max_seqlen": 2.0},
            "max_seqlen: expected a Python int",
        ),
        (
            {"values": torch.zeros(2), "offsets": torch.tensor([0, 2]), "max_seqlen": -1},
            "max_seqlen: expected >= 0",
        ),
    ],
)
def test_constructor_rejects_bad_structure(kwargs, match):
    with pytest.raises(ValueError, match=match):
        JaggedTensor(**kwargs)


def test_from_padded_rejects_bad_lengths():
    with pytest.raises(
        ValueError, match=r"lengths: expected 2 entries \(dense.shape\[0\]\), found 3"
    ):
        JaggedTensor.from_padded(torch.zeros(2, 3), [1, 1, 1])
    with pytest.raises(ValueError, match="lengths: expected every length <= dense.shape"):
        JaggedTensor.from_padded(torch.zeros(2, 3), [1, 4])
    with pytest.raises(ValueError, match="lengths: expected lengths >= 0, found -1"):
        JaggedTensor.from_padded(torch.zeros(2, 3), [1, -1])


def test_checks_switch_is_a_setter_and_a_context_manager():
    assert content_checks_on()
    with checks_enabled(False):
        assert not content_checks_on()
        # content of lengths is not inspected: negative length passes structure checks
        JaggedTensor.from_lengths(torch.zeros(0), torch.tensor([0, 0]))
    assert content_checks_on()
    checks_enabled(False)
    try:
        assert not content_checks_on()
    finally:
        checks_enabled(True)
    assert content_checks_on()


@settings(max_examples=20, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 9), min_size=1, max_size=5),
    d=st.integers(1, 4),
    extra=st.integers(0, 3),
)
def test_padded_round_trip_property(lengths, d, extra):
    jt = _jt(lengths, d=d)
    n = max(lengths) + extra
    dense = jt.to_padded(max_len=n, pad_value=1.5)
    mask = jt.padding_mask(n)
    assert torch.all(dense[~mask] == 1.5)
    assert torch.equal(dense[mask], jt.values)
    assert torch.equal(JaggedTensor.from_padded(dense, jt.lengths()).values, jt.values)


# ------------------------------------------------------------------ KeyedJaggedTensor
def _kjt():
    return KeyedJaggedTensor(
        keys=["clicks", "carts"],
        values=torch.tensor([11, 12, 13, 21, 22]),
        lengths=torch.tensor([2, 1, 0, 2]),
    )


def test_kjt_layout_is_key_major():
    kjt = _kjt()
    assert kjt.batch_size == 2
    assert kjt.offsets.tolist() == [0, 2, 3, 3, 5]
    assert kjt.length_per_key() == [3, 2]
    d = kjt.to_dict()
    assert list(d) == ["clicks", "carts"]
    assert d["clicks"].values.tolist() == [11, 12, 13]
    assert d["clicks"].offsets.tolist() == [0, 2, 3]
    assert d["carts"].offsets.tolist() == [0, 0, 2]
    assert d["carts"].max_seqlen == 2
    assert kjt["carts"][1].tolist() == [21, 22]


def test_kjt_from_dict_round_trip_and_offsets_only():
    kjt = _kjt()
    back = KeyedJaggedTensor.from_dict(kjt.to_dict())
    assert back.keys == kjt.keys
    assert torch.equal(back.values, kjt.values)
    assert torch.equal(back.lengths, kjt.lengths)
    from_offsets = KeyedJaggedTensor(kjt.keys, kjt.values, offsets=kjt.offsets)
    assert from_offsets.lengths.tolist() == [2, 1, 0, 2]


def test_kjt_weights():
    kjt = KeyedJaggedTensor(
        ["a", "b"], torch.arange(3), torch.tensor([1, 0, 1, 1]), weights=torch.ones(3)
    )
    assert [w.numel() for w in kjt.weights_dict().values()] == [1, 2]
    back = KeyedJaggedTensor.from_dict(kjt.to_dict(), weights=kjt.weights_dict())
    assert torch.equal(back.weights, kjt.weights)


class _FakeTorchrecKJT:
    """Duck type with torchrec's accessor methods (torchrec itself is not a dependency)."""

    def __init__(self, keys, values, lengths):
        self._k, self._v, self._l = keys, values, lengths

    def keys(self):
        return self._k

    def values(self):
        return self._v

    def lengths(self):
        return self._l

    def weights_or_none(self):
        return None


def test_kjt_from_torchrec_duck_type():
    fake = _FakeTorchrecKJT(["x", "y"], torch.tensor([5, 6, 7]), torch.tensor([0, 1, 2, 0]))
    kjt = KeyedJaggedTensor.from_torchrec(fake)
    assert kjt["y"].values.tolist() == [6, 7]
    assert kjt["x"].lengths().tolist() == [0, 1]


def test_kjt_to_torchrec_round_trip():
    pytest.importorskip("torchrec")
    kjt = _kjt()
    back = KeyedJaggedTensor.from_torchrec(kjt.to_torchrec())
    assert torch.equal(back.lengths, kjt.lengths)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"keys": ["a", "a"], "values": torch.zeros(1), "lengths": torch.tensor([1, 0])},
            "keys: expected unique",
        ),
        ({"keys": ["a"], "values": torch.zeros(1)}, "lengths/offsets: expected at least one"),
        (
            {"keys": ["a", "b"], "values": torch.zeros(1), "lengths": torch.tensor([1, 0, 0])},
            "multiple of len",
        ),
        (
            {"keys": ["a"], "values": torch.zeros(2), "offsets": torch.tensor([0, 1])},
            r"offsets\[-1\] == number",
        ),
        (
            {
                "keys": ["a"],
                "values": torch.zeros(2),
                "lengths": torch.tensor([2]),
                "weights": torch.ones(3),
            },
            "weights: expected 2",
        ),
    ],
)
def test_kjt_rejects_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KeyedJaggedTensor(**kwargs)


def test_kjt_from_dict_rejects_mismatched_batch():
    with pytest.raises(ValueError, match=r"features\['b'\]: expected batch size 2"):
        KeyedJaggedTensor.from_dict({"a": _jt([1, 1]), "b": _jt([1])})
