"""The `[training]` settings (linguachaind.config) and the devnet adversary's update transform
(linguachaind.services.trainer.distort) on a real LoRA layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chain.errors import ConfigError, ErrorCode
from chain.lora import check_update_blob, lora_layout, update_blob
from chain.params import DEVNET
from linguachaind.config import build_config
from linguachaind.services.trainer import Adversary, distort


def _data(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text('{"prompt": "1+1=", "completion": "2"}\n')
    return path


def test_training_table_maps_to_flat_settings(tmp_path: Path) -> None:
    data = _data(tmp_path)
    (tmp_path / "linguachain.toml").write_text(
        f'[training]\ndata = "{data}"\nsteps = 12\nlr = 0.01\nbatch_size = 4\nthreads = 1\ndevice = "cpu"\n'
    )
    config = build_config({"network": "devnet", "datadir": str(tmp_path)}, env={})
    assert (config.train_data, config.train_steps, config.train_lr) == (data, 12, 0.01)
    assert (config.train_batch_size, config.train_threads, config.device) == (4, 1, "cpu")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"train_steps": 0}, "train_steps"),
        ({"train_lr": 2.0}, "train_lr"),
        ({"train_batch_size": 0}, "train_batch_size"),
        ({"train_dp_epsilon": -1.0}, "train_dp_epsilon"),
        ({"train_adversary": "flip"}, "train_adversary must be one of"),
        ({"train_data": "/nonexistent/x.jsonl"}, "is not a file"),
    ],
)
def test_bad_training_settings_are_refused(tmp_path: Path, flags: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config({"network": "devnet", "datadir": str(tmp_path), **flags}, env={}, read_file=False)


def test_adversary_is_devnet_only(tmp_path: Path) -> None:
    flags = {"datadir": str(tmp_path), "train_data": str(_data(tmp_path)), "train_adversary": "scale"}
    assert build_config({"network": "devnet", **flags}, env={}, read_file=False).train_adversary == "scale"
    with pytest.raises(ConfigError, match="devnet only"):
        build_config({"network": "testnet", **flags}, env={}, read_file=False)


def test_adversary_transforms_the_update() -> None:
    layout = lora_layout([("m.q_proj", 8, 8), ("m.v_proj", 8, 8)], DEVNET)
    rng = np.random.default_rng(1)
    honest = {s.name: rng.integers(-1000, 1000, size=s.shape, dtype=np.int32) for s in layout.exchanged()}
    blob = update_blob(honest)

    def tensors(b: bytes) -> dict[str, np.ndarray]:
        update = check_update_blob(b, layout)
        assert not isinstance(update, ErrorCode)
        return update.as_dict()

    flipped = tensors(distort(blob, layout, Adversary.SIGN_FLIP))
    scaled = tensors(distort(blob, layout, Adversary.SCALE))
    noised = tensors(distort(blob, layout, Adversary.NOISE))
    for name, t in honest.items():
        assert np.array_equal(flipped[name], -t)
        assert np.array_equal(scaled[name], t * 10)
        assert not np.array_equal(noised[name], t)
        assert abs(float(np.corrcoef(noised[name].ravel(), t.ravel())[0, 1])) < 0.5


def test_learning_unit_over_the_size_bound_is_refused_before_any_fetch() -> None:
    """mempool.policy: a learning unit declaring a blob above `max_learning_unit_bytes` is
    BLOB_TOO_LARGE at the stateless stage (a peer never fetches it); at the bound it passes."""
    import dataclasses

    from chain.codec import encode
    from chain.crypto import SecretKey
    from chain.tx import make_tx
    from chain.types import BlobHash, ChainId, Hash32, Micro, TimestampMs
    from chain.units import Encryption, LearningUnit
    from mempool.policy import check_raw

    params = DEVNET
    key = SecretKey.from_label("trainer-test")
    unit = LearningUnit(
        ChainId(params.chain_id),
        key.pubkey,
        Hash32(bytes(32)),
        BlobHash(bytes(range(32))),
        10,
        Micro(1_000_000),
        0,
        Encryption.PLAINTEXT,
        params.max_learning_unit_bytes,
        TimestampMs(1),
        0,
    )
    ok = unit.mined(params)
    big = dataclasses.replace(unit, byte_size=params.max_learning_unit_bytes + 1).mined(params)
    accepted = check_raw(params, encode(make_tx(key, params.chain_id, 0, params.min_fee, ok)))
    assert not isinstance(accepted, ErrorCode)
    refused = check_raw(params, encode(make_tx(key, params.chain_id, 0, params.min_fee, big)))
    assert refused is ErrorCode.BLOB_TOO_LARGE


def test_train_key_file_must_exist(tmp_path: Path) -> None:
    key = tmp_path / "unit.key"
    flags = {"network": "devnet", "datadir": str(tmp_path), "train_key_file": str(key)}
    with pytest.raises(ConfigError, match="train_key_file"):
        build_config(flags, env={}, read_file=False)
    key.write_text("11" * 32 + "\n")
    key.chmod(0o600)
    assert build_config(flags, env={}, read_file=False).train_key_file == key
