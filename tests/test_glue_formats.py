"""GLUE readers on small fixture files written here in the GLUE layouts (the rows are made up, not GLUE data)."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.glue import GlueFormatError, glue_layout, read_glue_parquet, read_glue_split, read_glue_tsv

STSB_HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
MNLI_COMMON = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
               "sentence2_parse\tsentence1\tsentence2")


def write_tsv(path: Path, lines: list[str], bom: bool = False, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((("\ufeff" if bom else "") + newline.join(lines) + newline).encode("utf-8"))
    return path


def stsb_folder(root: Path) -> Path:
    folder = root / "STS-B"
    write_tsv(folder / "train.tsv", [
        STSB_HEADER,
        "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA dog runs on the grass.\tA dog is running outside.\t4.200",
        '1\tmain-news\theadlines\t2015\t0007\tnone\tnone\tHe said "no comment.\tThe minister declined.\t1.500',
        "2\tmain-forums\tanswers-forums\t2015\t0012\tnone\tnone\tCats sleep a lot.\tThe market fell today.\t0.000",
    ])
    write_tsv(folder / "dev.tsv", [
        STSB_HEADER,
        "0\tmain-captions\tMSRvid\t2012test\t0003\tnone\tnone\tA man plays a guitar.\tA man plays the guitar.\t5.000",
    ], newline="\r\n")  # Windows line ends
    write_tsv(folder / "test.tsv", [
        STSB_HEADER.rsplit("\t", 1)[0],
        "0\tmain-captions\tMSRvid\t2012test\t0020\tnone\tnone\tA woman slices an onion.\tSomeone cuts an onion.",
        "1\tmain-news\theadlines\t2015\t0021\tnone\tnone\tRain is expected.\tIt may rain.",
    ])
    return folder


def test_stsb_tsv_splits(tmp_path):
    stsb_folder(tmp_path)
    train = read_glue_split(tmp_path, "STS-B", "train")
    assert train.task == "stsb" and train.classes is None and train.target == {"type": "float", "range": [0, 5]}
    assert train.rows == [
        {"id": "0", "text": "A dog runs on the grass.", "text_pair": "A dog is running outside.", "label": 4.2},
        {"id": "1", "text": 'He said "no comment.', "text_pair": "The minister declined.", "label": 1.5},
        {"id": "2", "text": "Cats sleep a lot.", "text_pair": "The market fell today.", "label": 0.0},
    ]
    assert read_glue_split(tmp_path / "STS-B", "stsb", "validation").rows == [
        {"id": "0", "text": "A man plays a guitar.", "text_pair": "A man plays the guitar.", "label": 5.0}]
    test = read_glue_split(tmp_path, "stsb", "test")
    assert [r["label"] for r in test.rows] == [None, None] and not test.labelled
    assert test.rows[1]["text_pair"] == "It may rain."


def test_mrpc_tsv_with_byte_order_mark(tmp_path):
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
    path = write_tsv(tmp_path / "MRPC" / "train.tsv", [
        header,
        "1\t702876\t702977\tThe company posted a profit.\tThe firm reported a gain.",
        "0\t2108705\t2108831\tShares rose 3 percent.\tThe index closed lower on Friday.",
    ], bom=True)
    split = read_glue_tsv(path, "mrpc")
    assert split.classes == ["not_equivalent", "equivalent"]
    assert [(r["id"], r["label"]) for r in split.rows] == [("0", 1), ("1", 0)]
    test = write_tsv(tmp_path / "MRPC" / "test.tsv", [
        "index\t#1 ID\t#2 ID\t#1 String\t#2 String", "0\t1089874\t1089925\tOne sentence.\tAnother sentence."])
    assert read_glue_split(tmp_path, "mrpc", "test").rows == [
        {"id": "0", "text": "One sentence.", "text_pair": "Another sentence.", "label": None}]
    assert test.is_file()


def test_qnli_rte_wnli_labels(tmp_path):
    qnli = write_tsv(tmp_path / "qnli.tsv", [
        "index\tquestion\tsentence\tlabel",
        "0\tWhen was the bridge built?\tThe bridge was built in 1901.\tentailment",
        "1\tWho painted it?\tThe museum opens at nine.\tnot_entailment",
    ])
    assert [r["label"] for r in read_glue_tsv(qnli, "qnli").rows] == [0, 1]
    rte = write_tsv(tmp_path / "rte.tsv", [
        "index\tsentence1\tsentence2\tlabel",
        "0\tThe river flooded the town in May.\tThe town was flooded.\tentailment",
    ])
    assert read_glue_tsv(rte, "RTE").rows[0] == {"id": "0", "text": "The river flooded the town in May.",
                                                 "text_pair": "The town was flooded.", "label": 0}
    wnli = write_tsv(tmp_path / "wnli.tsv", ["index\tsentence1\tsentence2\tlabel",
                                              "0\tThe cup did not fit in the box because it was big.\tThe cup was big.\t1"])
    split = read_glue_tsv(wnli, "wnli")
    assert split.classes == ["not_entailment", "entailment"] and split.rows[0]["label"] == 1


def test_mnli_matched_and_mismatched(tmp_path):
    folder = tmp_path / "MNLI"
    parse = "( a b )\t( c d )\t(ROOT (S a b))\t(ROOT (S c d))"
    write_tsv(folder / "train.tsv", [
        MNLI_COMMON + "\tlabel1\tgold_label",
        f"0\t31193\t31193n\tgovernment\t{parse}\tThe plan cuts costs.\tThe plan saves money.\tentailment\tentailment",
        f"1\t101457\t101457e\ttelephone\t{parse}\tWe talked all night.\tWe never spoke.\tcontradiction\tcontradiction",
    ])
    dev_header = MNLI_COMMON + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label"
    write_tsv(folder / "dev_matched.tsv", [
        dev_header,
        f"0\t63735\t63735n\tslate\t{parse}\tThe show starts late.\tThe show is popular.\tneutral\tneutral\tneutral"
        "\tneutral\tentailment\tneutral"])
    write_tsv(folder / "dev_mismatched.tsv", [
        dev_header,
        f"0\t75290\t75290c\tletters\t{parse}\tPlease give today.\tDo not give.\tcontradiction\tcontradiction"
        "\tcontradiction\tneutral\tcontradiction\tcontradiction"])
    write_tsv(folder / "test_matched.tsv", [MNLI_COMMON, f"0\t31193\t31193n\tgovernment\t{parse}\tA b.\tC d."])
    assert [r["label"] for r in read_glue_split(tmp_path, "mnli", "train").rows] == [0, 2]
    assert read_glue_split(tmp_path, "mnli", "validation_matched").rows[0]["label"] == 1
    assert read_glue_split(tmp_path, "mnli", "validation_mismatched").rows[0]["label"] == 2
    assert read_glue_split(tmp_path, "mnli", "test_matched").rows[0]["label"] is None
    assert read_glue_split(tmp_path, "mnli", "train").classes == ["entailment", "neutral", "contradiction"]
    with pytest.raises(GlueFormatError, match=r"no dev_mismatched.tsv.*test_mismatched|no test_mismatched.tsv"):
        read_glue_split(tmp_path, "mnli", "test_mismatched")
    with pytest.raises(GlueFormatError, match=r"no split 'validation'.*validation_matched"):
        read_glue_split(tmp_path, "mnli", "validation")


def test_cola_headerless_train_and_headed_test(tmp_path):
    write_tsv(tmp_path / "CoLA" / "train.tsv", [
        "gj04\t1\t\tThe children played in the yard.",
        "gj04\t0\t*\tThe children in the yard played the.",
    ])
    write_tsv(tmp_path / "CoLA" / "test.tsv", ["index\tsentence", "0\tShe sings well."])
    train = read_glue_split(tmp_path, "cola", "train")
    assert train.classes == ["unacceptable", "acceptable"]
    assert train.rows == [
        {"id": "0", "text": "The children played in the yard.", "text_pair": None, "label": 1},
        {"id": "1", "text": "The children in the yard played the.", "text_pair": None, "label": 0},
    ]
    assert read_glue_split(tmp_path, "cola", "test").rows == [
        {"id": "0", "text": "She sings well.", "text_pair": None, "label": None}]
    bad = write_tsv(tmp_path / "bad_cola.tsv", ["gj04\t1\tThe children played."])
    with pytest.raises(GlueFormatError, match=r"bad_cola.tsv, line 1: 3 tab-separated fields, but CoLA's headerless "
                                              r"layout \['source', 'label', 'original_label', 'sentence'\] has 4"):
        read_glue_tsv(bad, "cola")


def test_errors_name_file_line_and_columns(tmp_path):
    stsb = stsb_folder(tmp_path)
    ragged = write_tsv(tmp_path / "ragged.tsv", [STSB_HEADER, "0\tg\tf\t2012\t1\tn\tn\tOne.\tTwo.\t3.0\textra"])
    with pytest.raises(GlueFormatError, match=r"ragged.tsv, line 2: 11 tab-separated fields, but the header "
                                              r"\['index', 'genre'.*'score'\] has 10"):
        read_glue_tsv(ragged, "stsb")
    # a QNLI file read as RTE: the columns it has are named
    qnli = write_tsv(tmp_path / "q.tsv", ["index\tquestion\tsentence\tlabel", "0\tWhy?\tBecause.\tentailment"])
    with pytest.raises(GlueFormatError, match=r"q.tsv, line 1: GLUE RTE needs the column\(s\) \['sentence1', "
                                              r"'sentence2'\]; the file has \['index', 'question', "
                                              r"'sentence', 'label'\]"):
        read_glue_tsv(qnli, "rte")
    # a test file (no score) read as a labelled split
    with pytest.raises(GlueFormatError, match=r"needs the column\(s\) \['score'\]"):
        read_glue_tsv(stsb / "test.tsv", "stsb")
    bad_score = write_tsv(tmp_path / "s.tsv", [STSB_HEADER, "0\tg\tf\t2012\t1\tn\tn\tOne.\tTwo.\t5.5"])
    with pytest.raises(GlueFormatError, match=r"s.tsv, line 2: score '5.5' is outside \[0, 5\]"):
        read_glue_tsv(bad_score, "stsb")
    bad_label = write_tsv(tmp_path / "r.tsv", ["index\tsentence1\tsentence2\tlabel", "0\tA.\tB.\tneutral"])
    with pytest.raises(GlueFormatError, match=r"r.tsv, line 2: label 'neutral' is not one of \['entailment', "
                                              r"'not_entailment'\]"):
        read_glue_tsv(bad_label, "rte")
    bad_index = write_tsv(tmp_path / "m.tsv", ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", "yes\t1\t2\tA.\tB."])
    with pytest.raises(GlueFormatError, match=r"m.tsv, line 2: label 'yes' is not one of \['0', '1'\] "
                                              r"\(0 = not_equivalent, 1 = equivalent\)"):
        read_glue_tsv(bad_index, "mrpc")
    latin = tmp_path / "latin.tsv"
    latin.write_bytes(b"index\tsentence1\tsentence2\tlabel\n0\tCaf\xe9.\tB.\tentailment\n")
    with pytest.raises(GlueFormatError, match=r"latin.tsv.*not UTF-8"):
        read_glue_tsv(latin, "rte")
    (tmp_path / "empty.tsv").write_text("")
    with pytest.raises(GlueFormatError, match=r"empty.tsv is empty"):
        read_glue_tsv(tmp_path / "empty.tsv", "rte")
    with pytest.raises(GlueFormatError, match=r"nope.tsv: no such file"):
        read_glue_tsv(tmp_path / "nope.tsv", "rte")
    with pytest.raises(GlueFormatError, match=r"unknown GLUE task 'sts'; known: cola \(CoLA\)"):
        glue_layout("sts")
    with pytest.raises(GlueFormatError, match=r"no train.tsv and no train-\*.parquet for GLUE rte.*has \["):
        read_glue_split(tmp_path, "rte", "train")


# -- the Hugging Face parquet layout, written by the datasets library itself --------------------------
@pytest.fixture
def hf_datasets(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf_home")))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    return datasets


def write_hf_parquet(datasets, path: Path, columns: dict, label_names: list[str] | None) -> Path:
    features = {c: datasets.Value("string") for c in columns if c not in ("label", "idx")}
    features["label"] = datasets.ClassLabel(names=label_names) if label_names else datasets.Value("float32")
    features["idx"] = datasets.Value("int32")
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict(columns, features=datasets.Features(features)).to_parquet(str(path))
    return path


def test_parquet_layout_equals_tsv_layout(tmp_path, hf_datasets):
    stsb_folder(tmp_path / "tsv")
    tsv = read_glue_split(tmp_path / "tsv", "stsb", "train")
    hf_root = tmp_path / "glue"
    write_hf_parquet(hf_datasets, hf_root / "stsb" / "train-00000-of-00001.parquet", {
        "sentence1": [r["text"] for r in tsv.rows], "sentence2": [r["text_pair"] for r in tsv.rows],
        "label": [r["label"] for r in tsv.rows], "idx": [0, 1, 2]}, None)
    from_parquet = read_glue_split(hf_root, "stsb", "train")
    assert from_parquet.rows == tsv.rows and from_parquet.target == tsv.target
    write_hf_parquet(hf_datasets, hf_root / "stsb" / "test-00000-of-00001.parquet", {
        "sentence1": ["A."], "sentence2": ["B."], "label": [-1.0], "idx": [0]}, None)
    assert read_glue_split(hf_root, "stsb", "test").rows == [{"id": "0", "text": "A.", "text_pair": "B.",
                                                               "label": None}]


def test_parquet_mnli_and_qnli_columns_and_class_names(tmp_path, hf_datasets):
    names = ["entailment", "neutral", "contradiction"]
    path = write_hf_parquet(hf_datasets, tmp_path / "mnli" / "validation_matched" / "0000.parquet", {
        "premise": ["The show starts late.", "We talked."], "hypothesis": ["It is popular.", "We never spoke."],
        "label": [1, 2], "idx": [0, 1]}, names)
    split = read_glue_split(tmp_path, "mnli", "validation_matched")
    assert split.classes == names and [r["label"] for r in split.rows] == [1, 2]
    assert split.rows[0]["text"] == "The show starts late." and split.rows[1]["text_pair"] == "We never spoke."
    # the mnli file read as qnli: the columns it has are named
    with pytest.raises(GlueFormatError, match=r"glue/qnli needs the column\(s\) \['question', 'sentence'\]; the file "
                                              r"has \['premise', 'hypothesis', 'label', 'idx'\]"):
        read_glue_parquet(path, "qnli")
    qnli = write_hf_parquet(hf_datasets, tmp_path / "qnli.parquet", {
        "question": ["Why?"], "sentence": ["Because."], "label": [1], "idx": [7]}, ["entailment", "not_entailment"])
    assert read_glue_parquet(qnli, "qnli").rows == [{"id": "7", "text": "Why?", "text_pair": "Because.", "label": 1}]
    relabelled = write_hf_parquet(hf_datasets, tmp_path / "rte.parquet", {
        "sentence1": ["A."], "sentence2": ["B."], "label": [0], "idx": [0]}, ["yes", "no"])
    with pytest.raises(GlueFormatError, match=r"label names \['yes', 'no'\] differ from glue/rte's \['entailment', "
                                              r"'not_entailment'\]"):
        read_glue_parquet(relabelled, "rte")
    unlabelled = write_hf_parquet(hf_datasets, tmp_path / "mrpc_test.parquet", {
        "sentence1": ["A.", "C."], "sentence2": ["B.", "D."], "label": [-1, -1], "idx": [0, 1]},
        ["not_equivalent", "equivalent"])
    with pytest.raises(GlueFormatError, match=r"mrpc_test.parquet, row 0 \(idx 0\): label -1 \(no label\)"):
        read_glue_parquet(unlabelled, "mrpc")
    assert [r["label"] for r in read_glue_parquet(unlabelled, "mrpc", require_labels=False).rows] == [None, None]
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(GlueFormatError, match=r"junk.parquet: not a readable parquet file"):
        read_glue_parquet(tmp_path / "junk.parquet", "mrpc")


def test_both_layouts_in_one_folder_is_refused(tmp_path, hf_datasets):
    folder = stsb_folder(tmp_path)
    write_hf_parquet(hf_datasets, folder / "train-00000-of-00001.parquet", {
        "sentence1": ["A."], "sentence2": ["B."], "label": [1.0], "idx": [0]}, None)
    with pytest.raises(GlueFormatError, match=r"holds both train.tsv and parquet files"):
        read_glue_split(folder, "stsb", "train")
