import json

from mpo.data.tasks import pairs_prompt_dataset, prompt_dataset


def _jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_imdb_style_prompt_dataset_from_local_files(tmp_path):
    for split in ("train", "test"):
        _jsonl(tmp_path / f"{split}.jsonl", [{"text": f"review {i} was a fine film<br />really", "label": i % 2}
                                              for i in range(10)])
    data = prompt_dataset(str(tmp_path / "train.jsonl"), "text", 3, 6, 4)
    assert set(data) == {"train", "eval"} and len(data["train"]) == 6 and len(data["eval"]) == 4
    row = data["train"][0]
    assert row["prompt"] == " ".join(row["text"].split()[:3]) and "<br" not in row["text"]


def test_hh_style_prompt_dataset_from_local_file(tmp_path):
    rows = [{"chosen": f"\n\nHuman: q{i}?\n\nAssistant: yes {i}", "rejected": f"\n\nHuman: q{i}?\n\nAssistant: no"}
            for i in range(8)]
    path = _jsonl(tmp_path / "hh.jsonl", rows)
    data = pairs_prompt_dataset(str(path), "hh_rlhf", 5, 3, train_split="train", eval_split="train")
    row = data["train"][0]
    assert row["prompt"].endswith("Assistant:") and row["text"].startswith(row["prompt"])
    assert row["text"][len(row["prompt"]):].strip().startswith("yes")


def test_one_local_file_feeds_train_and_eval_from_disjoint_rows(tmp_path):
    rows = [{"text": f"review number {i} of a film"} for i in range(60)] + [{"text": "review number 3 of a film"}]
    path = _jsonl(tmp_path / "reviews.jsonl", rows)  # one file: both splits would read all of it
    data = prompt_dataset(str(path), "text", 3, 40, 10, seed=1)
    train, held_out = set(data["train"]["text"]), set(data["eval"]["text"])
    assert len(data["train"]) == 40 and len(data["eval"]) == 10 and not train & held_out
    again = prompt_dataset(str(path), "text", 3, 40, 10, seed=1)
    assert again["eval"]["text"] == data["eval"]["text"]  # seeded
    short = prompt_dataset(str(path), "text", 3, 100, 20, seed=1)  # 60 distinct texts: 50 + 10, still disjoint
    assert (len(short["train"]), len(short["eval"])) == (50, 10)
    assert not set(short["train"]["text"]) & set(short["eval"]["text"])


def test_one_pairs_file_feeds_train_and_eval_from_disjoint_rows(tmp_path):
    rows = [{"chosen": f"\n\nHuman: q{i}?\n\nAssistant: yes", "rejected": f"\n\nHuman: q{i}?\n\nAssistant: no"}
            for i in range(30)]
    path = _jsonl(tmp_path / "hh.jsonl", rows)
    data = pairs_prompt_dataset(str(path), "hh_rlhf", 20, 10)
    assert not set(data["train"]["prompt"]) & set(data["eval"]["prompt"]) and len(data["eval"]) == 10


def test_malformed_or_empty_data_files_are_named(tmp_path):
    import pytest

    from mpo.infra.errors import DataError

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": broken\n')
    with pytest.raises(DataError, match=f"could not read {bad} as json data"):
        prompt_dataset(str(bad), "text", 3, 5, 2)
    blank = tmp_path / "blank.csv"
    blank.write_text("text\n")
    with pytest.raises(DataError, match=f"{blank} holds no rows"):
        prompt_dataset(str(blank), "text", 3, 5, 2)
    other = _jsonl(tmp_path / "other.jsonl", [{"body": "x"}])
    with pytest.raises(DataError, match=r"column\(s\) \['text'\] not found"):
        prompt_dataset(str(other), "text", 3, 5, 2)
