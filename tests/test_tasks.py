"""Task abstraction and every built-in task plugin, on tiny fake copies with the real layouts."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import musicrep
from musicrep.errors import ConfigError
from musicrep.keys import KEY_NAMES, normalize_key
from musicrep.tasks import Item, Task, TaskDataError, check_items, encode_targets, split_by_ratio

SR = 16000


def get(name: str, **config) -> Task:
    return musicrep.get_component("task", name, **config)


def write_wav(path: Path, seconds: float = 0.05, sr: int = SR, freq: float = 440.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sr * seconds)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr,
             format="MP3" if path.suffix == ".mp3" else None)
    return path


# -- the abstraction -----------------------------------------------------------------------
def test_targets_per_kind():
    items = [Item("a", None, ["x"]), Item("b", None, ["z"]), Item("c", None, ["y"])]
    np.testing.assert_array_equal(encode_targets(items, "multiclass", ["x", "y", "z"]), [0, 2, 1])
    multi = [Item("a", None, ["x", "z"]), Item("b", None, [])]
    np.testing.assert_array_equal(encode_targets(multi, "multilabel", ["x", "y", "z"]), [[1, 0, 1], [0, 0, 0]])
    reg = [Item("a", None, [0.5, -1.0]), Item("b", None, [2.0, 3.0])]
    assert encode_targets(reg, "regression", ["p", "q"]).shape == (2, 2)


def test_check_items_names_the_bad_item():
    with pytest.raises(TaskDataError, match="'b'.*'w'"):
        check_items([Item("a", None, ["x"]), Item("b", None, ["w"])], "multiclass", ["x"], source="t")
    with pytest.raises(TaskDataError, match="twice"):
        check_items([Item("a", None, ["x"]), Item("a", None, ["x"])], "multiclass", ["x"], source="t")
    with pytest.raises(TaskDataError, match="2 labels"):
        check_items([Item("a", None, ["x", "y"])], "multiclass", ["x", "y"], source="t")
    with pytest.raises(TaskDataError, match="1 targets"):
        check_items([Item("a", None, [1.0])], "regression", ["p", "q"], source="t")


def test_normalize_key_spellings():
    assert normalize_key("eb minor") == "Eb minor"
    assert normalize_key("D#:maj") == "Eb major"
    assert normalize_key("Gb major") == "F# major"
    assert normalize_key("  a   Minor ") == "A minor"
    assert normalize_key("Cb major") == "B major"
    assert len(set(KEY_NAMES)) == 24
    for bad in ("H major", "C", "C dorian", "-"):
        with pytest.raises(ValueError):
            normalize_key(bad)


def test_split_by_ratio_is_stable_and_proportional():
    keys = [f"item{i}" for i in range(3000)]
    splits = [split_by_ratio(k, [0.8, 0.1, 0.1], 7) for k in keys]
    assert splits == [split_by_ratio(k, [0.8, 0.1, 0.1], 7) for k in reversed(keys)][::-1]
    share = {s: splits.count(s) / len(keys) for s in ("train", "valid", "test")}
    assert abs(share["train"] - 0.8) < 0.04 and abs(share["test"] - 0.1) < 0.03
    assert splits != [split_by_ratio(k, [0.8, 0.1, 0.1], 8) for k in keys]


def test_every_builtin_task_is_registered_with_a_summary():
    tasks = musicrep.list_components("task")
    for name in ("hear", "csv", "synth", "magnatagatune", "mtg-jamendo", "gtzan", "giantsteps-key",
                 "nsynth", "emomusic", "vocalset"):
        assert name in tasks and tasks[name].summary


# -- HEAR -------------------------------------------------------------------------------------
def hear_task(root: Path, *, mode: str = "trainvaltest", embedding: str = "scene",
              prediction: str = "multiclass", evaluation=("top1_acc", "mirex_key")) -> Path:
    """A task folder as hear-preprocess (and devbench/render_tasks.py) write it."""
    vocab = ["C major", "A minor", "G major"]
    splits = ["train", "valid", "test"] if mode == "trainvaltest" else ["fold00", "fold01", "fold02"]
    for s, split in enumerate(splits):
        labels = {}
        for i in range(3):
            name = f"{split}_{i}.wav"
            for rate in (16000, 22050):
                write_wav(root / str(rate) / split / name, sr=rate)
            labels[name] = [vocab[(i + s) % 3]] if prediction == "multiclass" else vocab[: i + 1]
        (root / f"{split}.json").write_text(json.dumps(labels))
    (root / "labelvocabulary.csv").write_text("idx,label\n" + "".join(f"{i},{v}\n" for i, v in enumerate(vocab)))
    meta = {"task_name": "keys", "version": "1", "embedding_type": embedding, "prediction_type": prediction,
            "split_mode": mode, "sample_duration": 4.0, "evaluation": list(evaluation), "sample_rate": 16000}
    if mode != "trainvaltest":
        meta["nfolds"] = 3
    (root / "task_metadata.json").write_text(json.dumps(meta))
    return root


def test_hear_trainvaltest(tmp_path):
    task = get("hear", path=str(hear_task(tmp_path / "keys")))
    assert task.kind == "multiclass" and task.split_mode == "trainvaltest"
    assert task.label_names == ["C major", "A minor", "G major"]  # labelvocabulary.csv order
    assert task.metrics == ["accuracy", "key_weighted"]
    assert task.splits == ["train", "valid", "test"] and len(task.items("test")) == 3
    item = task.items("valid")[0]
    assert item.path.endswith("16000/valid/valid_0.wav") and item.labels == ["A minor"]
    assert task.audio(item, 16000).shape == (800,)
    assert task.audio(item, 22050).shape == (1102,)  # read from the 22050/ copy
    assert task.audio(item, 8000).shape == (400,)  # resampled
    np.testing.assert_array_equal(task.targets(task.items("train")), [0, 1, 2])
    assert task.fold_roles(0) == {"train": ["train"], "valid": ["valid"], "test": ["test"]}


def test_hear_items_are_keyed_by_the_bytes_of_every_copy_a_model_may_read(tmp_path):
    """Two HEAR folders of the same files share their content keys (so their clips are embedded
    once); changing any rate's copy of a clip gives it a new key, and only it; a folder of one
    rate keys a clip by its file's digest alone, as any file-backed task does."""
    import hashlib
    import shutil

    from musicrep.content import ContentIndex

    first = hear_task(tmp_path / "a")
    second = tmp_path / "b"
    shutil.copytree(first, second)
    index = ContentIndex()

    def keys(root):
        task = get("hear", path=str(root))
        return {item.id: task.content_key(item, index) for item in task.items()}

    before = keys(first)
    assert keys(second) == before  # (the helper writes one tone for every clip: equal bytes, equal keys)
    changed = next(iter(sorted((second / "22050" / "test").glob("*.wav"))))
    write_wav(changed, sr=22050, freq=523.25)
    after = keys(second)
    assert {i for i in after if after[i] != before[i]} == {f"test/{changed.name}"}

    single = tmp_path / "c"
    shutil.copytree(first, single)
    shutil.rmtree(single / "22050")
    task = get("hear", path=str(single))
    item = task.items()[0]
    assert task.content_key(item, index) == hashlib.sha256(Path(item.path).read_bytes()).hexdigest()


def test_hear_kfold_and_multilabel(tmp_path):
    task = get("hear", path=str(hear_task(tmp_path / "k", mode="new_split_kfold", prediction="multilabel",
                                          evaluation=("mAP", "aucroc"))), sample_rate=22050)
    assert task.split_mode == "kfold" and task.splits == ["fold00", "fold01", "fold02"]
    assert task.kind == "multilabel" and task.metrics == ["pr_auc", "roc_auc"]
    assert "/22050/" in task.items("fold01")[0].path
    assert task.fold_roles(2) == {"train": ["fold01"], "valid": ["fold00"], "test": ["fold02"]}
    assert task.targets(task.items("fold00")).shape == (3, 3)


def test_hear_refusals_name_the_problem(tmp_path):
    with pytest.raises(TaskDataError, match="event"):
        get("hear", path=str(hear_task(tmp_path / "e", embedding="event")))
    with pytest.raises(TaskDataError, match=str(tmp_path / "absent")) as err:
        get("hear", path=str(tmp_path / "absent"))
    assert "task_metadata.json" in str(err.value)
    root = hear_task(tmp_path / "v")
    (root / "labelvocabulary.csv").unlink()
    with pytest.raises(TaskDataError, match="labelvocabulary.csv"):
        get("hear", path=str(root))
    root = hear_task(tmp_path / "f", mode="presplit_kfold")
    (root / "fold02.json").unlink()
    with pytest.raises(TaskDataError, match="nfolds=3"):
        get("hear", path=str(root))
    with pytest.raises(TaskDataError, match="44100"):
        get("hear", path=str(hear_task(tmp_path / "r")), sample_rate=44100)


# -- CSV manifest -------------------------------------------------------------------------------
def write_csv(path: Path, header: list[str], rows: list[list], delimiter: str = ",") -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_csv_multiclass_with_split_column_and_segments(tmp_path):
    write_wav(tmp_path / "audio" / "a.wav", seconds=1.0)
    manifest = write_csv(tmp_path / "m.csv", ["path", "label", "split", "start", "end"],
                         [["audio/a.wav", "dog", "train", "0.25", "0.5"], ["audio/b.wav", "cat", "test", "", ""],
                          ["audio/c.wav", "dog", "valid", "", ""]])
    task = get("csv", path=str(manifest))
    assert task.label_names == ["cat", "dog"] and task.metrics == ["accuracy"]
    first = task.items("train")[0]
    assert first.path == str((tmp_path / "audio" / "a.wav").resolve())  # relative to the CSV
    assert first.duration == 0.25
    assert task.audio(first, SR).shape == (SR // 4,)


def test_csv_multilabel_ratio_split_and_regression(tmp_path):
    rows = [[f"x{i}.wav", "rock;pop" if i % 2 else "jazz"] for i in range(200)]
    task = get("csv", path=str(write_csv(tmp_path / "m.tsv", ["file", "tags"], rows, "\t")),
               prediction_type="multilabel", path_column="file", label_columns=["tags"], seed=3)
    assert task.label_names == ["jazz", "pop", "rock"] and task.metrics == ["roc_auc", "pr_auc"]
    counts = {s: len(task.items(s)) for s in task.splits}
    assert set(counts) == {"train", "valid", "test"} and counts["train"] > 120
    assert task.items()[1].labels == ["pop", "rock"]
    again = get("csv", path=str(tmp_path / "m.tsv"), prediction_type="multilabel", path_column="file",
                label_columns=["tags"], seed=3)
    assert [i.split for i in again.items()] == [i.split for i in task.items()]
    assert again.items() == task.items()
    reg = get("csv", path=str(write_csv(tmp_path / "r.csv", ["path", "a", "v", "split"],
                                        [["1.wav", "0.5", "-2", "train"], ["2.wav", "1", "3", "test"]])),
              prediction_type="regression", label_columns=["a", "v"])
    assert reg.label_names == ["a", "v"] and reg.metrics == ["r2"]
    np.testing.assert_allclose(reg.targets(reg.items()), [[0.5, -2], [1, 3]])


def test_csv_errors_name_file_line_and_column(tmp_path):
    bad = write_csv(tmp_path / "b.csv", ["path", "labl"], [["a.wav", "x"]])
    with pytest.raises(TaskDataError, match="no column 'label'.*labl"):
        get("csv", path=str(bad))
    reg = write_csv(tmp_path / "r.csv", ["path", "label"], [["a.wav", "1.0"], ["b.wav", "loud"]])
    with pytest.raises(TaskDataError, match="line 3"):
        get("csv", path=str(reg), prediction_type="regression").items()
    with pytest.raises(TaskDataError, match="missing file .*nothere.csv"):
        get("csv", path=str(tmp_path / "nothere.csv"))
    with pytest.raises(ConfigError, match="label_columns"):
        get("csv", path=str(bad), label_columns=["a", "b"])


# -- MagnaTagATune ---------------------------------------------------------------------------------
def test_magnatagatune(tmp_path):
    tags = ["guitar", "classical", "slow", "techno", "rare"]
    rows = []
    layout = [("0", "2"), ("5", "10"), ("b", "11"), ("c", "20"), ("d", "30"), ("f", "40"), ("6", "35644")]
    for n, (folder, clip) in enumerate(layout):
        flags = [1, n % 2, 1 if n < 5 else 0, n % 3 == 0, 0]
        rows.append([clip, *map(int, flags), f"{folder}/artist-album-{clip}-0-29.mp3"])
    rows[-2][5] = 1  # 'rare' once
    write_csv(tmp_path / "annotations_final.csv", ["clip_id", *tags, "mp3_path"], rows, "\t")
    write_wav(tmp_path / "mp3" / "c" / "artist-album-20-0-29.mp3", seconds=0.5, sr=22050)
    task = get("magnatagatune", path=str(tmp_path), n_tags=3)
    assert task.kind == "multilabel" and task.metrics[0] == "roc_auc"
    assert task.label_names == ["classical", "guitar", "slow"]  # the 3 most frequent
    splits = {i.id: i.split for i in task.items()}
    assert splits == {"2": "train", "10": "train", "11": "train", "20": "valid", "30": "test", "40": "test"}
    item = task.items("valid")[0]
    assert item.path == str(tmp_path / "mp3" / "c" / "artist-album-20-0-29.mp3")
    assert abs(task.audio(item, SR).shape[0] - SR // 2) < 1200
    dropped = get("magnatagatune", path=str(tmp_path), n_tags=1, drop_untagged=True)
    assert all(i.labels == ["guitar"] for i in dropped.items())
    (tmp_path / "annotations_final.csv").unlink()
    with pytest.raises(TaskDataError, match="annotations_final.csv"):
        get("magnatagatune", path=str(tmp_path))


# -- GTZAN ------------------------------------------------------------------------------------------
def gtzan_copy(root: Path) -> Path:
    for genre in ("blues", "jazz", "rock"):
        for i in range(3):
            write_wav(root / "genres" / genre / f"{genre}.{i:05d}.wav", sr=22050)
    return root


def write_gtzan_splits(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train_filtered.txt").write_text("blues/blues.00000.wav\njazz/jazz.00000.wav\nrock/rock.00000.wav\n")
    (folder / "valid_filtered.txt").write_text("blues/blues.00001.wav\njazz/jazz.00001.wav\n")
    (folder / "test_filtered.txt").write_text("rock/rock.00002.wav\njazz/jazz.00002.wav\n")


def test_gtzan(tmp_path):
    root = gtzan_copy(tmp_path / "gtzan")
    with pytest.raises(TaskDataError, match="train_filtered.txt") as err:
        get("gtzan", path=str(root))
    assert "split_dir" in str(err.value)
    write_gtzan_splits(tmp_path / "lists")
    task = get("gtzan", path=str(root), split_dir=str(tmp_path / "lists"))
    assert task.label_names == ["blues", "jazz", "rock"]
    assert [i.id for i in task.items("test")] == ["rock.00002", "jazz.00002"]
    assert len(task.items()) == 7  # only the listed files
    assert task.items("valid")[0].path == str(root / "genres" / "blues" / "blues.00001.wav")
    assert task.audio(task.items("train")[0], SR).shape == (800,)


# -- NSynth ---------------------------------------------------------------------------------------------
def test_nsynth(tmp_path):
    for s, split in enumerate(("train", "valid", "test")):  # instruments differ between the sets
        notes = {}
        for i, (family, pitch) in enumerate([("guitar", 20), ("bass", 40), ("organ", 60), ("vocal", 108)]):
            name = f"{family}_acoustic_{s}0{i}-{pitch:03d}-100"
            notes[name] = {"note_str": name, "pitch": pitch, "velocity": 100, "instrument_family_str": family,
                           "instrument_family": 0, "sample_rate": 16000}
        (tmp_path / f"nsynth-{split}" / "audio").mkdir(parents=True)
        (tmp_path / f"nsynth-{split}" / "examples.json").write_text(json.dumps(notes))
    write_wav(tmp_path / "nsynth-test" / "audio" / "organ_acoustic_202-060-100.wav")
    pitch = get("nsynth", path=str(tmp_path))
    assert len(pitch.label_names) == 88 and len(pitch.items("train")) == 3  # pitch 20 is off the piano
    organ = [i for i in pitch.items("test") if i.labels == ["60"]][0]
    assert pitch.audio(organ, SR).shape == (800,)
    family = get("nsynth", path=str(tmp_path), label="instrument_family", max_per_split=2)
    assert len(family.label_names) == 11 and len(family.items("valid")) == 2
    (tmp_path / "nsynth-valid" / "examples.json").unlink()
    with pytest.raises(TaskDataError, match="nsynth-valid/examples.json"):
        get("nsynth", path=str(tmp_path))


# -- GiantSteps Key -------------------------------------------------------------------------------------
def test_giantsteps_key(tmp_path):
    test_root, train_root = tmp_path / "giantsteps-key-dataset", tmp_path / "giantsteps-mtg-key-dataset"
    (test_root / "annotations" / "key").mkdir(parents=True)
    for track, key in [("100", "eb minor"), ("101", "A major")]:
        (test_root / "annotations" / "key" / f"{track}.LOFI.key").write_text(key + "\n")
    write_wav(test_root / "audio" / "100.LOFI.mp3", seconds=0.3, sr=44100)
    (train_root / "annotations").mkdir(parents=True)
    rows = [["1", "C# minor", "2"], ["2", "F major", "1"], ["3", "D major / B minor", "2"],
            ["4", "G major", "2"], ["5", "Bb major", "2"], ["6", "-", "2"]]
    rows += [[str(10 + i), "A minor", "2"] for i in range(60)]
    write_csv(train_root / "annotations" / "annotations.txt", ["ID", "MANUAL KEY", "C"], rows, "\t")
    artists = [["1", "Alpha"], ["4", "Alpha, Beta"], ["5", "Beta"], ["2", "X"], ["3", "Y"], ["6", "Z"]]
    artists += [[str(10 + i), f"Solo{i}"] for i in range(60)]
    write_csv(train_root / "annotations" / "beatport_metadata.txt", ["ID", "ARTIST"], artists, "\t")
    task = get("giantsteps-key", path=str(test_root), train_path=str(train_root))
    assert task.metrics[0] == "key_weighted" and len(task.label_names) == 24
    by_id = {i.id: i for i in task.items()}
    assert by_id["test/100"].labels == ["Eb minor"] and by_id["mtg/1"].labels == ["C# minor"]
    assert {"mtg/2", "mtg/3", "mtg/6"}.isdisjoint(by_id)  # low confidence, two keys, no key
    assert by_id["mtg/1"].split == by_id["mtg/4"].split == by_id["mtg/5"].split  # collaborators together
    assert set(task.splits) == {"train", "valid", "test"}
    assert task.audio(by_id["test/100"], SR).shape[0] > 0
    with pytest.raises(TaskDataError, match="giantsteps-mtg-key-dataset"):
        get("giantsteps-key", path=str(test_root), train_path=str(tmp_path / "nope"))


# -- EMOMusic --------------------------------------------------------------------------------------------
def test_emomusic(tmp_path):
    info_rows, static_rows = [], []
    for song in range(2, 42):
        dev = song < 32
        info_rows.append([song, f"{song}.mp3", f"Artist {song % 7}", f"Song {song}", "0.15", "0.60", "Pop",
                          "development" if dev else "evaluation"])
        static_rows.append([song, 3 + song % 5, 1.0, 2 + song % 3, 1.0])
    write_csv(tmp_path / "songs_info.csv", ["song_id", "file_name", "Artist", "Song title",
                                            "start of the segment (min.sec)", "end of the segment (min.sec)",
                                            "Genre", "Mediaeval 2013 set"], info_rows)
    (tmp_path / "annotations").mkdir()
    write_csv(tmp_path / "annotations" / "static_annotations.csv",
              ["song_id", " mean_arousal", " std_arousal", " mean_valence", " std_valence"], static_rows)
    write_wav(tmp_path / "clips_45seconds" / "2.mp3", seconds=0.3)
    task = get("emomusic", path=str(tmp_path))
    assert task.kind == "regression" and task.label_names == ["arousal", "valence"]
    assert len(task.items("test")) == 10 and task.splits == ["train", "valid", "test"]
    dev = task.targets(task.items("train") + task.items("valid"))
    np.testing.assert_allclose(dev.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(dev.std(axis=0), 1, atol=1e-5)
    artists = {}
    for item in task.items("train") + task.items("valid"):  # an artist never straddles train/valid
        artists.setdefault(int(item.id) % 7, set()).add(item.split)
    assert all(len(s) == 1 for s in artists.values())
    raw = get("emomusic", path=str(tmp_path), standardize=False)
    assert raw.items()[0].labels == [5.0, 4.0]
    assert task.audio(task.items()[0], SR).shape[0] > 0


# -- MTG-Jamendo --------------------------------------------------------------------------------------------
def test_mtg_jamendo(tmp_path):
    splits = tmp_path / "data" / "splits" / "split-0"
    splits.mkdir(parents=True)
    header = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS\n"
    for n, name in enumerate(("train", "validation", "test")):
        body = "".join(f"track_{n}{i:06d}\tartist_1\talbum_1\t{i:02d}/{n}{i}.mp3\t200.0\tgenre---rock"
                       + ("\tgenre---pop\n" if i % 2 else "\n") for i in range(3))
        (splits / f"autotagging_genre-{name}.tsv").write_text(header + body)
    write_wav(tmp_path / "01" / "01.low.mp3", seconds=0.3)
    task = get("mtg-jamendo", path=str(tmp_path), subset="genre")
    assert task.label_names == ["genre---pop", "genre---rock"] and task.kind == "multilabel"
    assert len(task.items("valid")) == 3
    low = [i for i in task.items() if i.id == "track_0000001"][0]
    assert low.path.endswith("01.low.mp3") and low.labels == ["genre---pop", "genre---rock"]
    with pytest.raises(TaskDataError, match="autotagging_moodtheme-train.tsv"):
        get("mtg-jamendo", path=str(tmp_path), subset="moodtheme")
    with pytest.raises(TaskDataError, match="split-1"):
        get("mtg-jamendo", path=str(tmp_path), split=1)


# -- VocalSet -------------------------------------------------------------------------------------------------
def test_vocalset(tmp_path):
    full = tmp_path / "FULL"
    for singer in ("f1", "f2", "m1", "m3"):
        for context, technique in [("arpeggios", "belt"), ("arpeggios", "vibrato"), ("long_tones", "forte"),
                                   ("excerpts", "spoken")]:
            for vowel in "aeiou":
                (full / singer / context / technique).mkdir(parents=True, exist_ok=True)
                (full / singer / context / technique / f"{singer}_{context}_{technique}_{vowel}.wav").touch()
    (full / "f1" / "arpeggios" / "belt" / "._f1_arpeggios_belt_a.wav").touch()
    with pytest.raises(TaskDataError, match="test_singers_technique.txt"):
        get("vocalset", path=str(tmp_path))
    (tmp_path / "test_singers_technique.txt").write_text("f2\nm3\n")
    task = get("vocalset", path=str(tmp_path))
    assert task.label_names == sorted(["belt", "breathy", "inhaled", "lip_trill", "spoken", "straight",
                                       "trill", "trillo", "vibrato", "vocal_fry"])
    assert {i.id.split("/")[0] for i in task.items("test")} == {"f2", "m3"}
    assert {i.labels[0] for i in task.items()} == {"belt", "vibrato", "spoken"}  # 'forte' is no technique
    assert len(task.items()) == 4 * 3 * 5
    singer = get("vocalset", path=str(tmp_path), label="singer")
    assert singer.label_names == ["f1", "f2", "m1", "m3"] and len(singer.items()) == 4 * 4 * 5


# -- synth ---------------------------------------------------------------------------------------------------
def lowest_peak_hz(x: np.ndarray, sr: int) -> float:
    """The lowest clear spectral peak: the fundamental of the synth's tones."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.shape[0])))
    hz = np.fft.rfftfreq(x.shape[0], 1 / sr)
    strong = np.nonzero((spectrum > 0.1 * spectrum.max()) & (hz > 60))[0]
    near = (hz >= hz[strong[0]]) & (hz <= hz[strong[0]] + 20)  # the partial and its tremolo sidebands
    return float(hz[near][np.argmax(spectrum[near])])


def test_synth_is_deterministic_by_seed_and_item():
    a, b = get("synth", label="timbre", seed=5), get("synth", label="timbre", seed=5)
    item = a.items("valid")[3]
    np.testing.assert_array_equal(a.audio(item, SR), b.audio(item, SR))
    other = get("synth", label="timbre", seed=6)
    assert not np.array_equal(a.audio(item, SR), other.audio(item, SR))
    assert not np.array_equal(a.audio(item, SR), a.audio(a.items("valid")[4], SR))
    from musicrep.embed import content_keys

    keys = content_keys(a)  # generated audio: keyed by what generates it, so the same seed, the same keys
    assert keys == content_keys(b) and len(set(keys)) == len(keys)
    assert set(keys).isdisjoint(content_keys(other))
    assert a.audio(item, SR).shape == (4 * SR,) and a.audio(item, SR).dtype == np.float32


@pytest.mark.parametrize("seed", [0, 1])
def test_synth_pitch_label_is_the_fundamental(seed):
    task = get("synth", label="pitch", seed=seed, n_train=36, n_valid=1, n_test=1, seconds=1.0)
    assert task.label_names == ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
    assert sorted({i.labels[0] for i in task.items("train")}) == sorted(task.label_names)
    for item in task.items("train"):
        x = task.audio(item, SR)
        half = x[: x.shape[0] // 2]  # the first of two notes
        midi = 69 + 12 * np.log2(lowest_peak_hz(half, SR) / 440.0)
        assert task.label_names[int(round(midi)) % 12] == item.labels[0], item.id


def test_synth_tempo_label_is_the_beat_period():
    """Of the task's tempi, the labelled one has the strongest onset autocorrelation."""
    task = get("synth", label="tempo", n_train=16, n_valid=1, n_test=1, seconds=6.0)
    bpms = [int(name.split()[0]) for name in task.label_names]
    hop = 160
    for item in task.items("train"):
        x = task.audio(item, SR).astype(np.float64)
        energy = np.add.reduceat(x ** 2, np.arange(0, x.shape[0], hop))
        onset = np.maximum(np.diff(energy), 0)
        ac = np.correlate(onset, onset, "full")[onset.shape[0] - 1:]
        lags = np.arange(ac.shape[0]) * hop / SR
        score = [ac[np.abs(lags - 60 / b) <= 0.02 * 60 / b].max() for b in bpms]
        assert task.label_names[int(np.argmax(score))] == item.labels[0], item.id


def test_synth_key_clips_stress_their_tonic_and_mode():
    task = get("synth", label="key", n_train=24, n_valid=1, n_test=1, seconds=2.0)
    tonics = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
    for item in task.items("train"):
        x = task.audio(item, SR)
        spectrum = np.abs(np.fft.rfft(x)) ** 2
        hz = np.fft.rfftfreq(x.shape[0], 1 / SR)
        band = (hz > 60) & (hz < 2000)
        pcs = np.round(12 * np.log2(hz[band] / 440.0) + 69).astype(int) % 12
        chroma = np.bincount(pcs, weights=spectrum[band], minlength=12)
        tonic_name, mode = item.labels[0].split()
        tonic = tonics.index(tonic_name)
        assert chroma[tonic] >= np.sort(chroma)[-3], item.id  # the tonic is among the strongest
        major_third = chroma[(tonic + 4) % 12] > chroma[(tonic + 3) % 12]
        assert major_third == (mode == "major"), item.id


def harmonic_profile(x: np.ndarray) -> np.ndarray:
    """Pitch-free timbre features of the first note: partial levels at multiples of the
    fundamental (in half steps of it, to catch inharmonic partials) and the energy envelope."""
    half = x[: x.shape[0] // 2].astype(np.float64)
    f0 = lowest_peak_hz(half, SR)
    spectrum = np.abs(np.fft.rfft(half * np.hanning(half.shape[0])))
    hz = np.fft.rfftfreq(half.shape[0], 1 / SR)
    levels = np.array([np.log(spectrum[np.abs(hz - r * f0) < f0 / 8].max() + 1e-3) if r * f0 < 7500
                       else np.log(1e-3) for r in np.arange(1, 16.5, 0.5)])
    rms = np.sqrt(np.add.reduceat(half ** 2, np.arange(0, half.shape[0], half.shape[0] // 16))[:16])
    return np.concatenate([(levels - levels[0]) / 4, 3 * rms / rms.max()])


def test_synth_timbres_are_separable_without_pitch():
    """A nearest-centroid classifier on pitch-free features tells the families apart."""
    task = get("synth", label="timbre", n_train=64, n_valid=1, n_test=1, seconds=1.0)
    items = task.items("train")
    feats = np.stack([harmonic_profile(task.audio(item, SR)) for item in items])
    labels = np.asarray([item.labels[0] for item in items])
    train = (np.arange(len(labels)) // len(task.label_names)) % 2 == 0  # half of each class
    centroids = np.stack([feats[train & (labels == n)].mean(0) for n in task.label_names])
    pred = np.asarray(task.label_names)[np.argmin(((feats[~train, None] - centroids[None]) ** 2).sum(-1), 1)]
    assert (pred == labels[~train]).mean() > 0.6  # chance is 1/8


def test_synth_config_is_validated():
    with pytest.raises(ConfigError, match="n_classes"):
        get("synth", label="tempo", n_classes=20)
    with pytest.raises(ConfigError, match="label"):
        get("synth", label="loudness")
    with pytest.raises(ConfigError, match="seconds"):
        get("synth", seconds=0.0)
    assert get("synth", label="key", n_classes=4).label_names == ["C major", "A minor", "G major", "E minor"]


def test_docs_name_every_key_of_every_task() -> None:
    """docs/tasks.md has a key table per task; a key added to a Config must be documented."""
    import dataclasses

    docs = (Path(__file__).parents[1] / "docs" / "tasks.md").read_text()
    built_in = {n: i for n, i in musicrep.list_components("task").items() if i.package == "musicrep"}
    assert {"csv", "synth", "hear"} <= set(built_in)
    for name, info in built_in.items():
        section = docs.split(f"### `{name}`\n", 1)
        assert len(section) == 2, f"docs/tasks.md has no section for task '{name}'"
        body = section[1].split("\n### ", 1)[0]
        for field in dataclasses.fields(info.config_class):
            assert f"`{field.name}`" in body, f"docs/tasks.md: task '{name}' does not document '{field.name}'"
