"""A Hugging Face folder is untrusted input: whatever its config.json or preprocessor_config.json
hold, ``hf:PATH`` loads or refuses with musicrep's one-line error naming the file; no other
exception, no allocation a config asks for beyond what its weights hold."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import musicrep
from musicrep.errors import MusicrepError

transformers = pytest.importorskip("transformers")  # CI installs musicrep[hf]: this always runs there

FILES = ("config.json", "preprocessor_config.json")
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random HuBERT, as save_pretrained writes it."""
    torch.manual_seed(0)
    config = transformers.HubertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=32, conv_dim=(8,), conv_stride=(5,), conv_kernel=(10,),
                                       num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)
    path = tmp_path_factory.mktemp("hubert")
    transformers.HubertModel(config).save_pretrained(path, safe_serialization=True)
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(path)
    return path


def copy_with(folder: Path, target: Path, name: str, content: bytes) -> Path:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(folder, target)
    (target / name).write_bytes(content)
    return target


def loads_or_names_the_file(path: Path, name: str) -> None:
    try:
        model = musicrep.load_model(f"hf:{path}", window=0.5)
    except MusicrepError as exc:
        message = str(exc)
        assert "\n" not in message
        assert message.startswith((str(path / name), str(path / "model.safetensors"))), message
    else:  # settings a model can run with: it embeds
        assert model(torch.zeros(1, 8000)).shape == (1, model.dim)


def test_the_untouched_folder_loads(folder: Path) -> None:
    assert musicrep.load_model(f"hf:{folder}").dim == 16


@SETTINGS
@given(name=st.sampled_from(FILES), content=st.binary(max_size=64))
def test_garbage_bytes_name_the_file(folder: Path, tmp_path: Path, name: str, content: bytes) -> None:
    path = copy_with(folder, tmp_path / "bytes", name, content)
    with pytest.raises(MusicrepError, match=rf"^{path / name}: "):
        musicrep.load_model(f"hf:{path}")


@SETTINGS
@given(name=st.sampled_from(FILES), data=st.data())
def test_changed_settings_load_or_name_the_file(folder: Path, tmp_path: Path, name: str, data: st.DataObject) -> None:
    """Real settings with some values replaced by anything JSON holds (huge numbers included)."""
    original = json.loads((folder / name).read_text())
    keys = data.draw(st.lists(st.sampled_from(sorted(original)), min_size=1, max_size=3, unique=True))
    changed = {**original, **{key: data.draw(json_values, label=key) for key in keys}}
    path = copy_with(folder, tmp_path / "changed", name, json.dumps(changed).encode())
    loads_or_names_the_file(path, name)


@pytest.mark.parametrize("key, value, message", [
    ("hidden_size", 2**40, r"config\.json: 'hidden_size' is 1099511627776, beyond any audio model"),
    ("intermediate_size", 2**16, r"config\.json: describes a model of \d+ bytes of parameters, but its weights"),
    ("num_hidden_layers", 10**9, r"config\.json: 'num_hidden_layers' is 1000000000, beyond any audio model"),
    ("conv_dim", [8] * 10**4, r"config\.json: 'conv_dim' lists 10000 values"),
])
def test_a_config_asking_for_a_huge_model_is_refused_before_allocating(folder: Path, tmp_path: Path, key: str,
                                                                       value: object, message: str) -> None:
    settings_ = {**json.loads((folder / "config.json").read_text()), key: value}
    path = copy_with(folder, tmp_path / "huge", "config.json", json.dumps(settings_).encode())
    with pytest.raises(MusicrepError, match=message):
        musicrep.load_model(f"hf:{path}")


@pytest.mark.parametrize("key, value", [("feature_size", 10**9), ("sampling_rate", 10**12), ("sampling_rate", "16k")])
def test_extractor_sizes_are_bounded(folder: Path, tmp_path: Path, key: str, value: object) -> None:
    settings_ = {**json.loads((folder / "preprocessor_config.json").read_text()), key: value}
    path = copy_with(folder, tmp_path / "extractor", "preprocessor_config.json", json.dumps(settings_).encode())
    with pytest.raises(MusicrepError, match=rf"preprocessor_config\.json: '{key}'"):
        musicrep.load_model(f"hf:{path}")
