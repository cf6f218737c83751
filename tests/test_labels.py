import pytest

from core.labels import LabelMappingError, label_key, map_labels, normalise


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


def test_hugging_face_imagenet_style_aliases_and_duplicate_names():
    """HF ImageNet heads label class 281 "tabby, tabby cat"; FiftyOne's / torchvision's ImageNet class list
    says "tabby". ImageNet also names two classes "crane" (the bird and the machine): such outputs go to the
    class at their own index, and only for a model trained on the dataset with exactly its classes."""
    classes = ["tabby", "tiger cat", "crane", "goldfish", "crane"]
    id2label = {0: "tabby, tabby cat", 1: "tiger cat", 2: "crane", 3: "goldfish, Carassius auratus", 4: "crane"}
    m = map_labels(id2label, classes, trained_on_dataset=True)
    assert m.model_to_dataset == [0, 1, 2, 3, 4]
    assert m.methods == {"tabby, tabby cat": "alias", "tiger cat": "exact", "crane": "index (duplicate name)",
                         "goldfish, Carassius auratus": "alias"}
    with pytest.raises(LabelMappingError) as err:  # not declared trained on it: refused, never guessed
        map_labels(id2label, classes)
    assert err.value.unmapped == err.value.duplicates == ["crane", "crane"]
    assert "outputs [2, 4] all 'crane'" in str(err.value) and "trained on this dataset" in str(err.value)
    # a different order: the dataset's two classes named "crane" make the label ambiguous (before: the first)
    with pytest.raises(LabelMappingError) as err:
        map_labels({0: "crane", 1: "tabby"}, classes, trained_on_dataset=True)
    assert err.value.unmapped == ["crane"] and err.value.ambiguous == {"crane": ["crane", "crane"]}
    assert "'crane' (class 2), 'crane' (class 4)" in str(err.value)
    # an alias list with no known name is still unmapped
    with pytest.raises(LabelMappingError) as err:
        map_labels({0: "tabby", 1: "spam, eggs"}, classes)
    assert err.value.unmapped == ["spam, eggs"]


def test_duplicate_name_goes_by_index_only_to_a_class_that_name_can_mean():
    classes = ["crane (bird)", "heron", "crane (machine)"]
    m = map_labels({0: "crane", 1: "heron", 2: "crane"}, classes, trained_on_dataset=True)
    assert m.model_to_dataset == [0, 1, 2] and m.methods["crane"] == "index (duplicate name)"
    # the same head in another order: the class at index 1 is "heron", which "crane" cannot mean
    with pytest.raises(LabelMappingError) as err:
        map_labels({0: "crane", 1: "crane", 2: "heron"}, classes, trained_on_dataset=True)
    assert err.value.unmapped == ["crane"] and err.value.duplicates == []
    assert "class 1, 'heron', is not one that name can mean" in str(err.value)
    # one head size more than the dataset's classes: no index rule
    with pytest.raises(LabelMappingError) as err:
        map_labels({0: "crane", 1: "heron", 2: "crane", 3: "stork"}, classes, trained_on_dataset=True)
    assert err.value.unmapped == ["crane", "crane", "stork"]
    assert err.value.ambiguous == {"crane": ["crane (bird)", "crane (machine)"]} and err.value.duplicates == []
    # not declared trained, same size: the duplicates are the labels that would map if it were
    with pytest.raises(LabelMappingError) as err:
        map_labels({0: "crane", 1: "heron", 2: "crane"}, classes)
    assert err.value.duplicates == ["crane", "crane"]


def test_label_key_keeps_what_changes_a_meaning():
    assert label_key("Not_Spam") == label_key("not spam") == label_key("NOT-SPAM!") == "not spam"
    assert label_key("Café-Crème") == "cafe creme"
    assert label_key("C#") == "c #" and label_key("c++") == "c + +" and label_key("c") == "c"
    assert label_key("+1") == "+ 1" and label_key("-1") == "- 1" and label_key("1") == "1"
    assert label_key("covid-19") == "covid 19"  # a hyphen inside a word is no sign
    assert label_key("<=50K") == "< = 50k" and label_key(">50K") == "> 50k"
    assert label_key("😀") == "😀" and label_key("?") == ""
    # normalise itself is unchanged (dataset slugs, placeholder labels): every symbol is a separator
    assert normalise("C#") == normalise("c++") == "c" and normalise("😀") == "" and normalise("N/A") == "n a"


def test_symbols_signs_and_look_alikes_never_map():
    with pytest.raises(LabelMappingError) as err:
        map_labels({0: "c#"}, ["c"])
    assert err.value.unmapped == ["c#"]
    m = map_labels({0: "C#", 1: "C++", 2: "C"}, ["c", "c#", "c++"])
    assert m.model_to_dataset == [1, 2, 0]
    with pytest.raises(LabelMappingError) as err:
        map_labels({0: "😀"}, ["happy"])
    assert "made only of symbols" in str(err.value)
    assert map_labels({0: "😀"}, ["happy"], {"😀": "happy"}).methods == {"😀": "synonym"}
    m = map_labels({0: "-1", 1: "0", 2: "+1"}, ["1", "0", "-1"])
    assert m.model_to_dataset == [2, 1, 0] and m.methods == {"-1": "exact", "0": "exact", "+1": "numeric"}
    with pytest.raises(LabelMappingError) as err:
        map_labels({0: "toxic", 1: "non-toxic"}, ["toxic"])
    assert err.value.unmapped == ["non-toxic"]


def test_two_labels_on_one_class_are_refused_unless_synonyms_say_so():
    with pytest.raises(LabelMappingError) as err:
        map_labels({0: "positive", 1: "Positive", 2: "negative"}, ["negative", "positive"])
    assert err.value.unmapped == ["positive", "Positive"]
    assert "'positive', 'Positive' would all map to the dataset class 'positive'" in str(err.value)
    assert str(err.value).startswith("2 of 3 model labels")
    m = map_labels({0: "face", 1: "human face"}, ["face"], {"human face": "face"})
    assert m.model_to_dataset == [0, 0] and m.methods == {"face": "exact", "human face": "synonym"}


def test_ambiguous_labels_name_their_candidates():
    with pytest.raises(LabelMappingError) as err:
        map_labels({0: "CARDIGAN", 1: "collie"}, ["Cardigan", "cardigan", "collie"])
    assert err.value.unmapped == ["CARDIGAN"]
    assert err.value.ambiguous == {"CARDIGAN": ["Cardigan", "cardigan"]}
    assert "ambiguous by the normalised rule: could be 'Cardigan', 'cardigan'" in str(err.value)
    assert "ambiguous" in err.value.reasons["CARDIGAN"]
    assert map_labels({0: "Cardigan", 1: "cardigan"}, ["cardigan", "Cardigan"]).model_to_dataset == [1, 0]


def test_plural_and_numeric():
    m = map_labels({0: "cats", 1: "Dog", 2: "puppies", 3: "boxes"}, ["cat", "dogs", "puppy", "box"])
    assert m.model_to_dataset == [0, 1, 2, 3] and set(m.methods.values()) == {"plural"}
    assert map_labels({0: "2 stars"}, ["1 star", "2 star"]).model_to_dataset == [1]
    m = map_labels({0: "1", 1: "5"}, ["1 star", "5 stars"])
    assert m.model_to_dataset == [0, 1] and set(m.methods.values()) == {"numeric"}
    # ImageNet has both "sunglass" and "sunglasses": a closer rule decides before the plural rule is tried
    assert map_labels({0: "SUNGLASSES", 1: "Sunglass"}, ["sunglass", "sunglasses"]).model_to_dataset == [1, 0]
    with pytest.raises(LabelMappingError) as err:  # "buses" is the regular plural of both "bus" and "buse"
        map_labels({0: "buses"}, ["bus", "buse"])
    assert err.value.ambiguous == {"buses": ["bus", "buse"]} and "ambiguous by the plural rule" in str(err.value)
