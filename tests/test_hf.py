"""Hugging Face audio models from a local folder (``hf:PATH``): tiny random models of each family
the plugin covers, saved as ``save_pretrained`` saves them, loaded with no network, windowed and
probed layer by layer like musicrep's own models; the safety switches only the user sets."""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import musicrep
from musicrep.errors import MusicrepError
from musicrep.layers import encode_layers, layer_names
from musicrep.model import cut_windows

transformers = pytest.importorskip("transformers")  # CI installs musicrep[hf]: this always runs there

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
HUBERT = dict(TINY, conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
              num_conv_pos_embedding_groups=2)

MERT_CONFIG = """
    from transformers import HubertConfig

    class MERTConfig(HubertConfig):
        model_type = "mert_model"
"""
MERT_MODEL = """
    from transformers import HubertModel

    from .configuration_MERT import MERTConfig

    class MERTModel(HubertModel):
        config_class = MERTConfig
"""


def save(model: torch.nn.Module, extractor, folder: Path) -> Path:
    model.save_pretrained(folder, safe_serialization=True)
    extractor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny random model per family, built once for the module (transformers is slow to import)."""
    t = transformers
    torch.manual_seed(0)
    made = {
        "hubert": save(t.HubertModel(t.HubertConfig(**HUBERT)), t.Wav2Vec2FeatureExtractor(sampling_rate=16000),
                       tmp_path_factory.mktemp("hubert")),
        "wav2vec2": save(t.Wav2Vec2Model(t.Wav2Vec2Config(**HUBERT)),
                         t.Wav2Vec2FeatureExtractor(sampling_rate=16000), tmp_path_factory.mktemp("wav2vec2")),
        "ast": save(t.ASTModel(t.ASTConfig(**TINY, max_length=100, num_mel_bins=16, frequency_stride=10,
                                           time_stride=10)),
                    t.ASTFeatureExtractor(num_mel_bins=16, max_length=100), tmp_path_factory.mktemp("ast")),
        "whisper": save(t.WhisperModel(t.WhisperConfig(
            d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=16, max_source_positions=100,
            max_target_positions=16, vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            decoder_start_token_id=1)),
            t.WhisperFeatureExtractor(feature_size=16, chunk_length=2), tmp_path_factory.mktemp("whisper")),
    }
    mert = save(t.HubertModel(t.HubertConfig(**HUBERT)), t.Wav2Vec2FeatureExtractor(sampling_rate=24000),
                tmp_path_factory.mktemp("mert"))
    (mert / "configuration_MERT.py").write_text(textwrap.dedent(MERT_CONFIG))
    (mert / "modeling_MERT.py").write_text(textwrap.dedent(MERT_MODEL))
    config = json.loads((mert / "config.json").read_text())
    config.update(model_type="mert_model", architectures=["MERTModel"],
                  auto_map={"AutoConfig": "configuration_MERT.MERTConfig", "AutoModel": "modeling_MERT.MERTModel"})
    (mert / "config.json").write_text(json.dumps(config))
    made["mert"] = mert
    return made


def waves(batch: int, seconds: float, rate: int, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(batch, int(seconds * rate), generator=torch.Generator().manual_seed(seed))


def reference_windows(model, wave: torch.Tensor) -> list[torch.Tensor]:
    """The windows of samples musicrep cuts for one track, cut here by the core's own function."""
    embedder = model.embedder
    return cut_windows(wave[None], embedder.window_frames, embedder.hop_frames, embedder.windowing)[0][:, 0]


@pytest.mark.parametrize("family", ["hubert", "wav2vec2"])
def test_a_waveform_model_embeds_each_window_and_pools(folders: dict[str, Path], family: str) -> None:
    model = musicrep.load_model(f"hf:{folders[family]}", window=0.5, hop=0.25)
    assert model.sample_rate == 16000 and model.dim == 32
    wave = waves(2, 1.3, 16000)
    timeline, offsets = model.timeline(wave)
    assert timeline.shape == (2, 4, 32) and timeline.dtype == torch.float32
    assert torch.allclose(offsets, torch.tensor([0.0, 0.25, 0.5, 0.75]))
    # the same windows through transformers directly: its extractor, its model, the mean over time
    hf = transformers.AutoModel.from_pretrained(folders[family]).eval()
    extractor = transformers.AutoFeatureExtractor.from_pretrained(folders[family])
    windows = reference_windows(model, wave[1])
    inputs = extractor([w.numpy() for w in windows], sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        expected = hf(**inputs).last_hidden_state.mean(dim=1)
    assert torch.allclose(timeline[1], expected, atol=1e-5)
    assert torch.allclose(model(wave), timeline.mean(dim=1), atol=1e-6)


def test_every_hidden_state_is_a_layer(folders: dict[str, Path]) -> None:
    encoder = musicrep.load_model(f"hf:{folders['hubert']}", window=0.5).embedder.encoder
    assert layer_names(encoder) == ("layer0", "layer1", "layer2", "out")
    windows = waves(3, 0.5, 16000, seed=1)[:, None]
    with torch.no_grad():
        layers = encode_layers(encoder, windows, layer_names(encoder))
        hidden = encoder.model(**encoder.model_inputs(windows), output_hidden_states=True).hidden_states
    assert all(value.shape == (3, 32) for value in layers.values())
    for i in range(3):  # each layer is its hidden state's mean over time
        assert torch.allclose(layers[f"layer{i}"], hidden[i].mean(dim=1), atol=1e-5)
    assert torch.allclose(layers["layer2"], layers["out"], atol=1e-6)
    assert not torch.allclose(layers["layer0"], layers["out"], atol=1e-3)


def test_ast_reads_its_filter_banks(folders: dict[str, Path]) -> None:
    model = musicrep.load_model(f"hf:{folders['ast']}", window=1.0, hop=1.0)
    assert model.sample_rate == 16000 and model.dim == 32
    assert layer_names(model.embedder.encoder)[-2:] == ("layer2", "out")
    wave = waves(2, 2.0, 16000, seed=2)
    embeddings = model(wave)
    assert embeddings.shape == (2, 32) and torch.isfinite(embeddings).all()
    assert not torch.allclose(embeddings[0], embeddings[1], atol=1e-4)


def test_whisper_uses_its_encoder_over_the_steps_that_hold_audio(folders: dict[str, Path]) -> None:
    """Whisper pads every input to its chunk (2 s here): a 1 s window's embedding averages the
    first 50 of the encoder's 100 steps, the ones that cover the audio."""
    model = musicrep.load_model(f"hf:{folders['whisper']}", window=1.0, hop=1.0)
    encoder = model.embedder.encoder
    assert not any("decoder" in key for key in model.embedder.state_dict())
    wave = waves(1, 1.0, 16000, seed=3)
    hf = transformers.AutoModel.from_pretrained(folders["whisper"]).eval().get_encoder()
    inputs = encoder.extractor([wave[0].numpy()], sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        states = hf(**inputs).last_hidden_state
    assert states.shape[1] == 100
    assert torch.allclose(model(wave), states[:, :50].mean(dim=1), atol=1e-5)
    assert not torch.allclose(model(wave), states.mean(dim=1), atol=1e-4)


def test_bf16_runs_the_model_under_autocast(folders: dict[str, Path]) -> None:
    """``precision = "bf16"`` reaches the transformers model: its output is the model's own under
    bfloat16 autocast (a tiny random model's differs a lot from float32: its conv features are
    near-constant before their normalisation, so the comparison is with autocast itself)."""
    wave = waves(2, 0.5, 16000, seed=4)
    full = musicrep.load_model(f"hf:{folders['hubert']}", window=0.5)
    half = musicrep.load_model(f"hf:{folders['hubert']}", window=0.5, precision="bf16")
    embeddings = half(wave)
    assert embeddings.dtype == torch.float32
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = full.embedder.encoder(wave[:, None]).float()
    assert torch.allclose(embeddings, expected, atol=1e-6)
    assert not torch.allclose(embeddings, full(wave), atol=1e-3)


def test_remote_code_is_refused_unless_the_user_trusts_it(folders: dict[str, Path]) -> None:
    with pytest.raises(MusicrepError, match=r"mert\d*/config\.json: the model needs code from its folder "
                                            r"\(configuration_MERT\.py, modeling_MERT\.py\), refused; set "
                                            r"trust_remote_code = true"):
        musicrep.load_model(f"hf:{folders['mert']}")
    model = musicrep.load_model(f"hf:{folders['mert']}", trust_remote_code=True, window=0.5)
    assert type(model.embedder.encoder.model).__name__ == "MERTModel"
    assert model.sample_rate == 24000  # MERT's rate, from its feature extractor
    assert layer_names(model.embedder.encoder) == ("layer0", "layer1", "layer2", "out")
    assert model(waves(2, 1.0, 24000, seed=5)).shape == (2, 32)


def test_pickle_weights_need_the_users_opt_in(folders: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    folder.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (folder / name).write_bytes((folders["hubert"] / name).read_bytes())
    torch.save(load_file(str(folders["hubert"] / "model.safetensors")), folder / "pytorch_model.bin")
    with pytest.raises(MusicrepError, match=r"pytorch_model\.bin: pickle weights can run code .* allow_pickle = true"):
        musicrep.load_model(f"hf:{folder}")
    wave = waves(1, 0.5, 16000, seed=6)
    loaded = musicrep.load_model(f"hf:{folder}", allow_pickle=True, window=0.5)(wave)
    assert torch.allclose(loaded, musicrep.load_model(f"hf:{folders['hubert']}", window=0.5)(wave), atol=1e-6)


def test_a_missing_tensor_is_named(folders: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "partial"
    folder.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (folder / name).write_bytes((folders["hubert"] / name).read_bytes())
    tensors = load_file(str(folders["hubert"] / "model.safetensors"))
    dropped = sorted(key for key in tensors if key.startswith("encoder.layers.1."))[0]
    save_file({k: v for k, v in tensors.items() if k != dropped}, str(folder / "model.safetensors"))
    with pytest.raises(MusicrepError, match=rf"model\.safetensors: tensor '{dropped}' is missing"):
        musicrep.load_model(f"hf:{folder}")


def test_options_are_checked(folders: dict[str, Path]) -> None:
    with pytest.raises(MusicrepError, match="trust_remote_code must be true or false, got 'yes'"):
        musicrep.load_model(f"hf:{folders['mert']}", trust_remote_code="yes")
    with pytest.raises(MusicrepError, match="the hf model has no option 'std_floor'"):
        musicrep.load_model(f"hf:{folders['hubert']}", std_floor=0.1)
    with pytest.raises(MusicrepError, match=r"nowhere: no such folder"):
        musicrep.load_model("hf:nowhere")
    with pytest.raises(MusicrepError, match=r"name it as 'hf:PATH'"):
        musicrep.load_model("hf")


def test_without_transformers_it_says_which_extra(folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # an import of it now fails, as when not installed
    with pytest.raises(MusicrepError, match=r'pip install "musicrep\[hf\]"'):
        musicrep.load_model(f"hf:{folders['hubert']}")


def test_a_pipeline_probes_hf_models_layer_by_layer(folders: dict[str, Path], tmp_path: Path) -> None:
    """8 kHz tasks resampled to each model's rate; the hubert layers and MERT, trusted by this
    TOML's own key, embedded, stored and probed like any model's."""
    from musicrep.pipeline.runner import run_pipeline
    from musicrep.pipeline.spec import load_pipeline
    from musicrep.store import EmbeddingStore

    (tmp_path / "hubert").symlink_to(folders["hubert"])
    toml = tmp_path / "pipeline.toml"
    toml.write_text(textwrap.dedent(f"""
        [run]
        name = "hf"
        device = "cpu"

        [tasks.pitch]
        type = "synth"
        label = "pitch"
        n_classes = 3
        n_train = 9
        n_valid = 6
        n_test = 6
        seconds = 0.75
        sample_rate = 8000

        [models.hubert]
        load = "hf:hubert"
        layers = ["layer0", "layer1", "out"]

        [models.mert]
        load = "hf:{folders['mert']}"
        trust_remote_code = true

        [embed]
        window = 0.5
        hop = 0.25
        num_workers = 0

        [probe]
        probes = [{{ type = "knn", k_grid = [1] }}]
    """))
    spec = load_pipeline(toml)
    assert spec.models["hubert"].load == f"hf:{tmp_path / 'hubert'}"
    assert spec.models["mert"].load_switches == {"trust_remote_code": True}
    table = run_pipeline(toml)
    run = tmp_path / "runs" / "hf"
    with EmbeddingStore(run / "embeddings" / "hubert" / "pitch.h5") as store:
        assert len(store) == 21 and store.dim == 32
        assert set(store.layers) == {"layer0", "layer1", "out"}
    assert (run / "probes" / "mert" / "pitch" / "knn.json").is_file()
    assert "hubert/layer0" in table and "hubert/best" in table and "mert" in table


def test_the_toml_keys_go_with_load_only(tmp_path: Path) -> None:
    from musicrep.pipeline.spec import load_pipeline

    toml = tmp_path / "pipeline.toml"
    toml.write_text('[tasks.t]\ntype = "synth"\n\n[models.m]\nfrontend = "mel"\nencoder = "fcn"\n'
                    "trust_remote_code = true\n")
    with pytest.raises(MusicrepError, match=r"trust_remote_code goes with load"):
        load_pipeline(toml)
    toml.write_text('[tasks.t]\ntype = "synth"\n\n[models.m]\nload = "hf:nowhere"\n')
    with pytest.raises(MusicrepError, match=r"no such file or folder: .*nowhere"):
        load_pipeline(toml)
    toml.write_text('[tasks.t]\ntype = "synth"\n\n[models.m]\nload = "hf:."\nallow_pickle = 1\n')
    with pytest.raises(MusicrepError, match=r"allow_pickle.*expected true or false, got 1"):
        load_pipeline(toml)
    toml.write_text('[tasks.t]\ntype = "synth"\n\n[models.m]\nload = "hf:."\nweights = "."\n')
    with pytest.raises(MusicrepError, match=r"'hf:\.' names its weights after the colon; drop the weights key"):
        load_pipeline(toml)
    with pytest.raises(ValueError, match=r"names its weights after the colon"):
        musicrep.load_model(f"hf:{tmp_path}", weights=tmp_path)
