import pytest

from pipeline.labels import LabelMappingError, map_labels, normalise


def test_normalise():
    assert normalise("  Sadness ") == "sadness"
    assert normalise("very_positive") == "very positive"
    assert normalise("Café-Crème!") == "cafe creme"


def test_exact_normalised_synonym_numeric():
    classes = ["rotten", "fresh"]
    m = map_labels({0: "Rotten", 1: "FRESH"}, classes)
    assert m.model_to_dataset == [0, 1] and m.methods == {"Rotten": "normalised", "FRESH": "normalised"}
    m = map_labels({0: "positive", 1: "negative"}, classes, {"negative": "rotten", "positive": "fresh"})
    assert m.model_to_dataset == [1, 0] and set(m.methods.values()) == {"synonym"}
    m = map_labels({0: "1 star", 1: "5 stars", 2: "3"}, ["1", "2", "3", "4", "5"])
    assert m.model_to_dataset == [0, 4, 2]
    assert m.methods == {"1 star": "numeric", "5 stars": "numeric", "3": "exact"}


def test_generic_labels_by_index_only_when_trained_on_dataset():
    classes = ["rotten", "fresh"]
    m = map_labels({0: "LABEL_0", 1: "LABEL_1"}, classes, trained_on_dataset=True)
    assert m.method == "index" and m.model_to_dataset == [0, 1]
    with pytest.raises(LabelMappingError) as err:
        map_labels({0: "LABEL_0", 1: "LABEL_1"}, classes, trained_on_dataset=False)
    assert err.value.unmapped == ["LABEL_0", "LABEL_1"]
    with pytest.raises(LabelMappingError):  # wrong count
        map_labels({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}, classes, trained_on_dataset=True)


def test_unmappable_labels_are_named():
    with pytest.raises(LabelMappingError) as err:
        map_labels({0: "spam", 1: "fresh", 2: "ham"}, ["rotten", "fresh"])
    assert err.value.unmapped == ["spam", "ham"]
    assert "spam" in str(err.value) and "2 of 3" in str(err.value)


def test_bad_ids():
    with pytest.raises(LabelMappingError):
        map_labels({}, ["a"])
    with pytest.raises(LabelMappingError):
        map_labels({0: "a", 2: "b"}, ["a", "b"])


def test_mapping_doc_records_rules():
    m = map_labels({0: "Rotten", 1: "fresh"}, ["rotten", "fresh"])
    doc = m.to_doc(["rotten", "fresh"], {0: "Rotten", 1: "fresh"})
    assert doc["pairs"] == [
        {"model_label": "Rotten", "dataset_class": "rotten", "rule": "normalised"},
        {"model_label": "fresh", "dataset_class": "fresh", "rule": "exact"},
    ]


def test_hugging_face_imagenet_style_aliases_and_duplicate_class_names():
    """HF ImageNet heads label class 281 "tabby, tabby cat"; FiftyOne's / torchvision's ImageNet class list
    says "tabby". ImageNet also names two classes "crane" (the bird, 134, and the machine, 517): each
    model output goes to the class at its own index."""
    classes = ["tabby", "tiger cat", "crane", "goldfish", "crane"]
    id2label = {0: "tabby, tabby cat", 1: "tiger cat", 2: "crane", 3: "goldfish, Carassius auratus", 4: "crane"}
    m = map_labels(id2label, classes)
    assert m.model_to_dataset == [0, 1, 2, 3, 4]
    assert m.methods == {"tabby, tabby cat": "alias", "tiger cat": "exact", "crane": "exact",
                         "goldfish, Carassius auratus": "alias"}
    # a different order: the duplicate name falls back to the first class of that name
    assert map_labels({0: "crane", 1: "tabby"}, classes).model_to_dataset == [2, 0]
    # an alias list with no known name is still unmapped
    with pytest.raises(LabelMappingError) as err:
        map_labels({0: "tabby", 1: "spam, eggs"}, classes)
    assert err.value.unmapped == ["spam, eggs"]
