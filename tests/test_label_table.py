"""Label mapping on real-world label sets: a model's id2label against a dataset's classes, with the mapping
(dataset class and rule per output) or the refusal (the labels refused, and the candidates of ambiguous ones)
that core.labels.map_labels must give. The label sets are those Hugging Face models and datasets publish
(sentiment, emotion, NLI, spam, toxicity, stars, CIFAR, Food-101, ImageNet ...), plus the traps: labels that
differ only by a sign, a symbol, casing or an emoji. The full ImageNet-1k head (timm's lemma lists, as Hugging
Face's ImageNet configs write them) is checked against the project's ImageNet class list at the end."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from core.fiftyone_support import imagenet_class_names, imagenet_short_names
from core.labels import LabelMappingError, map_labels


@dataclass(frozen=True)
class Case:
    name: str
    labels: list[str]  # id2label in id order
    classes: list[str]
    expect: list[str] | None = None  # the dataset class of each output, when it maps
    rules: list[str] | None = None  # the rule of each output, when it maps
    refused: list[str] | None = None  # LabelMappingError.unmapped, when it is refused
    ambiguous: dict[str, list[str]] | None = None  # LabelMappingError.ambiguous, when it is refused
    synonyms: dict[str, str] | None = None
    trained: bool = False


def ok(name, labels, classes, expect, rules, synonyms=None, trained=False) -> Case:
    """A case that maps; ``rules`` is one rule for every output or a list."""
    rules = [rules] * len(labels) if isinstance(rules, str) else rules
    return Case(name, labels, classes, expect=expect, rules=rules, synonyms=synonyms, trained=trained)


def no(name, labels, classes, refused, ambiguous=None, synonyms=None, trained=False) -> Case:
    """A case that is refused: ``refused`` are the labels named as unmapped (model order)."""
    return Case(name, labels, classes, refused=refused, ambiguous=ambiguous or {}, synonyms=synonyms, trained=trained)


LABEL_2 = ["LABEL_0", "LABEL_1"]
SST2 = ["negative", "positive"]
RT_SYNONYMS = {"negative": "rotten", "neg": "rotten", "positive": "fresh", "pos": "fresh"}
STARS_NLPTOWN = ["1 star", "2 stars", "3 stars", "4 stars", "5 stars"]
YELP_FULL = ["1 star", "2 star", "3 stars", "4 stars", "5 stars"]
EMOTION = ["sadness", "joy", "love", "anger", "fear", "surprise"]
EKMAN_NEUTRAL = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
GO_EMOTIONS = ["admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity",
               "desire", "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear",
               "gratitude", "grief", "joy", "love", "nervousness", "optimism", "pride", "realization", "relief",
               "remorse", "sadness", "surprise", "neutral"]
MNLI = ["entailment", "neutral", "contradiction"]
TWEET_EMOJI = ["❤", "😍", "😂", "💕", "🔥", "😊", "😎", "✨", "💙", "😘", "📷", "🇺🇸", "☀", "💜", "😉", "💯", "😁",
               "🎄", "📸", "😜"]
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION = ["T - shirt / top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
AG_NEWS = ["World", "Sports", "Business", "Sci/Tech"]
VOC_IN_COCO = ["airplane", "motorcycle", "couch", "tv", "dining table", "potted plant"]

CASES = [
    # ---------------------------------------------------------------- binary sentiment
    ok("sst2 NEGATIVE/POSITIVE on sst2", ["NEGATIVE", "POSITIVE"], SST2, SST2, "normalised"),
    ok("sst2 model on amazon_polarity", ["negative", "positive"], SST2, SST2, "exact"),
    ok("POSITIVE/NEGATIVE order swapped", ["POSITIVE", "NEGATIVE"], SST2, ["positive", "negative"], "normalised"),
    ok("sst2 model on rotten tomatoes (synonyms)", ["NEGATIVE", "POSITIVE"], ["rotten", "fresh"], ["rotten", "fresh"],
       "synonym", synonyms=RT_SYNONYMS),
    ok("neg/pos on rotten tomatoes (synonyms)", ["neg", "pos"], ["rotten", "fresh"], ["rotten", "fresh"], "synonym",
       synonyms=RT_SYNONYMS),
    ok("NEG/POS on imdb", ["NEG", "POS"], ["neg", "pos"], ["neg", "pos"], "normalised"),
    ok("negative/positive on imdb (synonyms)", SST2, ["neg", "pos"], ["neg", "pos"], "synonym",
       synonyms={"negative": "neg", "positive": "pos"}),
    no("negative/positive on imdb without synonyms", SST2, ["neg", "pos"], ["negative", "positive"]),
    no("neg/pos on sst2 without synonyms", ["neg", "pos"], SST2, ["neg", "pos"]),
    ok("neg/pos on sst2 with synonyms", ["neg", "pos"], SST2, SST2, "synonym",
       synonyms={"neg": "negative", "pos": "positive"}),
    ok("Rotten/FRESH (demo model)", ["Rotten", "FRESH"], ["rotten", "fresh"], ["rotten", "fresh"], "normalised"),
    ok("LABEL_0/1 trained on the dataset", LABEL_2, SST2, SST2, "index", trained=True),
    no("LABEL_0/1 not trained on the dataset", LABEL_2, SST2, LABEL_2),
    no("LABEL_0/1/2 trained, 2 classes", ["LABEL_0", "LABEL_1", "LABEL_2"], SST2, ["LABEL_0", "LABEL_1", "LABEL_2"],
       trained=True),
    no("LABEL ids out of order", ["LABEL_1", "LABEL_0"], SST2, ["LABEL_1", "LABEL_0"], trained=True),
    no("LABEL_0 beside a name", ["LABEL_0", "positive"], SST2, ["LABEL_0"], trained=True),
    ok("siebert on sst2 lower-case dataset", ["NEGATIVE", "POSITIVE"], ["Negative", "Positive"], ["Negative", "Positive"],
       "normalised"),
    no("Positive and positive in one head", ["positive", "Positive"], ["positive"], ["positive", "Positive"]),
    no("POSITIVE and positive beside negative", ["negative", "POSITIVE", "positive"], SST2, ["POSITIVE", "positive"]),
    ok("POSITIVE and positive when the dataset has both", ["POSITIVE", "positive"], ["positive", "POSITIVE"],
       ["POSITIVE", "positive"], "exact"),
    ok("pos and positive allowed by a synonym", ["pos", "positive", "negative"], SST2,
       ["positive", "positive", "negative"], ["synonym", "exact", "exact"], synonyms={"pos": "positive"}),
    no("two synonyms do not excuse two plain names", ["positive", "Positive", "pos"], ["positive"],
       ["positive", "Positive", "pos"], synonyms={"pos": "positive"}),
    # ---------------------------------------------------------------- three-way sentiment, signs
    ok("cardiffnlp sentiment on tweet_eval", ["negative", "neutral", "positive"], ["negative", "neutral", "positive"],
       ["negative", "neutral", "positive"], "exact"),
    ok("finbert order on financial_phrasebank", ["positive", "negative", "neutral"], ["negative", "neutral", "positive"],
       ["positive", "negative", "neutral"], "exact"),
    ok("cardiffnlp LABEL_0..2 trained", ["LABEL_0", "LABEL_1", "LABEL_2"], ["negative", "neutral", "positive"],
       ["negative", "neutral", "positive"], "index", trained=True),
    ok("Spanish Negativo/Neutro/Positivo", ["Negativo", "Neutro", "Positivo"], ["negativo", "neutro", "positivo"],
       ["negativo", "neutro", "positivo"], "normalised"),
    ok("-1/0/1 exact", ["-1", "0", "1"], ["-1", "0", "1"], ["-1", "0", "1"], "exact"),
    ok("-1/0/+1 on -1/0/1", ["-1", "0", "+1"], ["-1", "0", "1"], ["-1", "0", "1"], ["exact", "exact", "numeric"]),
    ok("+1/-1 on 1/-1", ["+1", "-1"], ["1", "-1"], ["1", "-1"], ["numeric", "exact"]),
    ok("unicode minus sign", ["\u22121", "+1"], ["-1", "1"], ["-1", "1"], ["normalised", "numeric"]),
    no("-1 never maps to 1", ["-1", "1"], ["1", "0"], ["-1"]),
    no("+1 and 1 in one head", ["+1", "1"], ["1"], ["+1", "1"]),
    no("-1 on a dataset without it", ["-1", "0", "1"], ["0", "1", "2"], ["-1"]),
    no("symbol signs on signed numbers", ["+", "-"], ["+1", "-1"], ["+", "-"]),
    ok("negative/positive on -1/+1 (synonyms)", ["negative", "positive"], ["-1", "+1"], ["-1", "+1"], "synonym",
       synonyms={"negative": "-1", "positive": "+1"}),
    # ---------------------------------------------------------------- stars and numbers
    ok("nlptown stars on 1..5", STARS_NLPTOWN, ["1", "2", "3", "4", "5"], ["1", "2", "3", "4", "5"], "numeric"),
    ok("nlptown stars on yelp_review_full", STARS_NLPTOWN, YELP_FULL, YELP_FULL,
       ["exact", "plural", "exact", "exact", "exact"]),
    ok("2 stars on 2 star", ["2 stars"], ["2 star"], ["2 star"], "plural"),
    ok("2 star on 2 stars", ["2 star"], ["2 stars"], ["2 stars"], "plural"),
    ok("1..5 on star names", ["1", "2", "3", "4", "5"], YELP_FULL, YELP_FULL, "numeric"),
    ok("5 stars on 5", ["5 stars"], ["4", "5"], ["5"], "numeric"),
    ok("Star casing", ["1 Star", "5 STARS"], ["1 star", "5 stars"], ["1 star", "5 stars"], "normalised"),
    no("stars on 0..4 (5 stars has no class)", STARS_NLPTOWN, ["0", "1", "2", "3", "4"], ["5 stars"]),
    ok("decimal values", ["0.5", "1.0"], ["0.50", "1"], ["0.50", "1"], "numeric"),
    ok("ordinals", ["1st", "2nd", "3rd"], ["1", "2", "3"], ["1", "2", "3"], "numeric"),
    no("two units are not one number", ["5 stars"], ["5 points"], ["5 stars"]),
    no("1 star and 1 in one head", ["1 star", "1"], ["1"], ["1 star", "1"]),
    ok("age buckets", ["0-2", "3-9", "10-19", "more than 70"], ["0-2", "3-9", "10-19", "more than 70"],
       ["0-2", "3-9", "10-19", "more than 70"], "exact"),
    ok("adult income", [">50K", "<=50K"], ["<=50K", ">50K"], [">50K", "<=50K"], "exact"),
    ok("adult income spaced", ["> 50K", "<= 50K"], ["<=50K", ">50K"], [">50K", "<=50K"], "normalised"),
    no("adult income without the comparison", ["50K"], ["<=50K", ">50K"], ["50K"]),
    # ---------------------------------------------------------------- emotion
    ok("bhadresh-savani emotion", EMOTION, EMOTION, EMOTION, "exact"),
    ok("capitalised emotion", [e.capitalize() for e in EMOTION], EMOTION, EMOTION, "normalised"),
    ok("upper-case emotion permuted", ["JOY", "SADNESS", "ANGER", "FEAR", "LOVE", "SURPRISE"], EMOTION,
       ["joy", "sadness", "anger", "fear", "love", "surprise"], "normalised"),
    ok("emotion LABEL_i trained", [f"LABEL_{i}" for i in range(6)], EMOTION, EMOTION, "index", trained=True),
    no("emotion LABEL_i untrained", [f"LABEL_{i}" for i in range(6)], EMOTION, [f"LABEL_{i}" for i in range(6)]),
    no("ekman+neutral on emotion", EKMAN_NEUTRAL, EMOTION, ["disgust", "neutral"]),
    ok("go_emotions on go_emotions", GO_EMOTIONS, GO_EMOTIONS, GO_EMOTIONS, "exact"),
    no("go_emotions on emotion", GO_EMOTIONS, EMOTION,
       [e for e in GO_EMOTIONS if e not in EMOTION]),
    ok("tweet_eval emotion", ["anger", "joy", "optimism", "sadness"], ["anger", "joy", "optimism", "sadness"],
       ["anger", "joy", "optimism", "sadness"], "exact"),
    no("joy and Joy in one head", ["joy", "Joy", "sadness"], EMOTION, ["joy", "Joy"]),
    ok("happiness on joy (synonym)", ["sadness", "happiness"], EMOTION, ["sadness", "joy"], ["exact", "synonym"],
       synonyms={"happiness": "joy"}),
    no("ambiguous synonyms", ["Bad"], ["negative", "very negative"], ["Bad"],
       ambiguous={"Bad": ["negative", "very negative"]}, synonyms={"bad": "negative", "BAD": "very negative"}),
    # ---------------------------------------------------------------- NLI, paraphrase, acceptability
    ok("roberta-large-mnli on mnli", ["CONTRADICTION", "NEUTRAL", "ENTAILMENT"], MNLI,
       ["contradiction", "neutral", "entailment"], "normalised"),
    ok("bart-large-mnli on mnli", ["contradiction", "neutral", "entailment"], MNLI,
       ["contradiction", "neutral", "entailment"], "exact"),
    ok("Entailment casing", ["Entailment", "Neutral", "Contradiction"], MNLI, MNLI, "normalised"),
    no("ENTAILMENT and entailment in one head", ["ENTAILMENT", "entailment", "neutral"], MNLI,
       ["ENTAILMENT", "entailment"]),
    ok("rte on rte", ["entailment", "not_entailment"], ["entailment", "not_entailment"],
       ["entailment", "not_entailment"], "exact"),
    ok("rte NOT_ENTAILMENT on spaced classes", ["ENTAILMENT", "NOT_ENTAILMENT"], ["entailment", "not entailment"],
       ["entailment", "not entailment"], "normalised"),
    no("rte model on mnli", ["entailment", "not_entailment"], MNLI, ["not_entailment"]),
    no("mnli model on rte", MNLI, ["entailment", "not_entailment"], ["neutral", "contradiction"]),
    ok("mrpc", ["not_equivalent", "equivalent"], ["not_equivalent", "equivalent"], ["not_equivalent", "equivalent"],
       "exact"),
    no("equivalent never maps to not equivalent", ["equivalent", "different"], ["not_equivalent"],
       ["equivalent", "different"]),
    ok("qqp casing", ["NOT_DUPLICATE", "DUPLICATE"], ["not_duplicate", "duplicate"], ["not_duplicate", "duplicate"],
       "normalised"),
    ok("cola", ["unacceptable", "acceptable"], ["unacceptable", "acceptable"], ["unacceptable", "acceptable"], "exact"),
    no("unacceptable never maps to acceptable", ["unacceptable", "acceptable"], ["acceptable"], ["unacceptable"]),
    # ---------------------------------------------------------------- yes / no, true / false
    ok("Yes/No", ["No", "Yes"], ["no", "yes"], ["no", "yes"], "normalised"),
    ok("boolq False/True", ["False", "True"], ["false", "true"], ["false", "true"], "normalised"),
    no("yes/no on false/true without synonyms", ["no", "yes"], ["false", "true"], ["no", "yes"]),
    ok("yes/no on false/true with synonyms", ["no", "yes"], ["false", "true"], ["false", "true"], "synonym",
       synonyms={"no": "false", "yes": "true"}),
    ok("yes! with punctuation only", ["yes!", "no."], ["yes", "no"], ["yes", "no"], "normalised"),
    no("yes and yes! in one head", ["yes", "yes!", "no"], ["yes", "no"], ["yes", "yes!"]),
    no("yes! on yes and yes?", ["yes!"], ["yes", "yes?"], ["yes!"], ambiguous={"yes!": ["yes", "yes?"]}),
    # ---------------------------------------------------------------- spam
    ok("sms_spam ham/spam", ["ham", "spam"], ["ham", "spam"], ["ham", "spam"], "exact"),
    ok("HAM/SPAM", ["HAM", "SPAM"], ["ham", "spam"], ["ham", "spam"], "normalised"),
    ok("Not_Spam on not spam", ["Not_Spam", "Spam"], ["not spam", "spam"], ["not spam", "spam"], "normalised"),
    no("not spam on ham/spam without synonyms", ["not spam", "spam"], ["ham", "spam"], ["not spam"]),
    ok("not spam on ham/spam with a synonym", ["not spam", "spam"], ["ham", "spam"], ["ham", "spam"],
       ["synonym", "exact"], synonyms={"not spam": "ham"}),
    no("spam/ham on rotten tomatoes (demo broken model)", ["spam", "ham"], ["rotten", "fresh"], ["spam", "ham"],
       synonyms=RT_SYNONYMS),
    # ---------------------------------------------------------------- toxicity, hate, irony
    ok("toxic-comment-model", ["non-toxic", "toxic"], ["non-toxic", "toxic"], ["non-toxic", "toxic"], "exact"),
    ok("NON_TOXIC/TOXIC", ["NON_TOXIC", "TOXIC"], ["non-toxic", "toxic"], ["non-toxic", "toxic"], "normalised"),
    no("non-toxic never maps to toxic", ["non-toxic", "toxic"], ["toxic"], ["non-toxic"]),
    no("not toxic on non toxic", ["not toxic", "toxic"], ["non toxic", "toxic"], ["not toxic"]),
    no("neutral on toxicity", ["neutral", "toxic"], ["non-toxic", "toxic"], ["neutral"]),
    ok("tweet_eval hate", ["non-hate", "hate"], ["non-hate", "hate"], ["non-hate", "hate"], "exact"),
    ok("NON-HATE casing", ["NON-HATE", "HATE"], ["non-hate", "hate"], ["non-hate", "hate"],
       "normalised"),
    no("not-hate is not non-hate", ["not-hate", "hate"], ["non-hate", "hate"], ["not-hate"]),
    ok("tweet_eval irony", ["non_irony", "irony"], ["non_irony", "irony"], ["non_irony", "irony"], "exact"),
    ok("tweet_eval offensive casing", ["NOT-OFFENSIVE", "OFFENSIVE"], ["not-offensive", "offensive"],
       ["not-offensive", "offensive"], "normalised"),
    # ---------------------------------------------------------------- programming languages, music
    ok("c/c#/c++/f# exact", ["c", "c#", "c++", "f#"], ["c", "c#", "c++", "f#"], ["c", "c#", "c++", "f#"], "exact"),
    ok("C/C#/C++/F# by case", ["C", "C#", "C++", "F#"], ["c", "c#", "c++", "f#"], ["c", "c#", "c++", "f#"],
       "normalised"),
    ok("C# on c/c#/c++", ["C#"], ["c", "c#", "c++"], ["c#"], "normalised"),
    no("c# never maps to c", ["c#"], ["c", "c++"], ["c#"]),
    no("c++ never maps to c", ["c++", "java"], ["c", "java"], ["c++"]),
    no("f# beside f", ["f#", "f"], ["f"], ["f#"]),
    no("C Sharp without a synonym", ["C Sharp"], ["c#"], ["C Sharp"]),
    ok("C Sharp with a synonym", ["C Sharp", "Java"], ["c#", "java"], ["c#", "java"], ["synonym", "normalised"],
       synonyms={"c sharp": "c#"}),
    ok("musical keys", ["C", "C#", "Db", "D"], ["c", "c#", "db", "d"], ["c", "c#", "db", "d"], "normalised"),
    no("music sharp sign is not #", ["C\u266f"], ["c", "c#"], ["C\u266f"]),
    ok("percent kept", ["50%", "100%"], ["50%", "100%"], ["50%", "100%"], "exact"),
    no("percent is not the bare number", ["50%"], ["50"], ["50%"]),
    ok("R&B casing", ["R&B", "Rock"], ["r&b", "rock"], ["r&b", "rock"], "normalised"),
    no("R&B is not RB", ["R&B"], ["rb"], ["R&B"]),
    # ---------------------------------------------------------------- emoji and symbols only
    ok("emoji exact, permuted", ["😀", "😢", "😡"], ["😡", "😀", "😢"], ["😀", "😢", "😡"], "exact"),
    ok("tweet_eval emoji", TWEET_EMOJI, TWEET_EMOJI, TWEET_EMOJI, "exact"),
    no("heart with variation selector", ["\u2764\ufe0f", "😍"], TWEET_EMOJI[:2], ["\u2764\ufe0f"]),
    no("one smiley is not another", ["😀"], ["😃"], ["😀"]),
    no("emoji on words", ["😀", "😢"], ["happy", "sad"], ["😀", "😢"]),
    ok("emoji on words by synonyms", ["😀", "😢"], ["happy", "sad"], ["happy", "sad"], "synonym",
       synonyms={"😀": "happy", "😢": "sad"}),
    ok("words on emoji by synonyms", ["happy", "sad"], ["😀", "😢"], ["😀", "😢"], "synonym",
       synonyms={"happy": "😀", "sad": "😢"}),
    no("emoji with a word is not the word", ["😀 happy"], ["happy"], ["😀 happy"]),
    ok("symbols exact", ["+", "-", "?"], ["?", "+", "-"], ["+", "-", "?"], "exact"),
    no("symbols on words", ["+", "-"], ["positive", "negative"], ["+", "-"]),
    ok("symbols on words by synonyms", ["+", "-"], ["positive", "negative"], ["positive", "negative"], "synonym",
       synonyms={"+": "positive", "-": "negative"}),
    no("? is not !", ["?"], ["!"], ["?"]),
    no("+ is not plus", ["+"], ["plus"], ["+"]),
    no("++ is not +", ["+", "++"], ["+"], ["++"]),
    # ---------------------------------------------------------------- accents
    ok("Café on cafe", ["Café", "Thé"], ["cafe", "the"], ["cafe", "the"], "normalised"),
    ok("négatif/positif", ["négatif", "positif"], ["negatif", "positif"], ["negatif", "positif"],
       ["normalised", "exact"]),
    ok("naïve on naive", ["naïve"], ["naive", "smart"], ["naive"], "normalised"),
    no("Café on cafe and café", ["Café"], ["cafe", "café"], ["Café"], ambiguous={"Café": ["cafe", "café"]}),
    # ---------------------------------------------------------------- plurals
    ok("cats_vs_dogs plural model", ["cats", "dogs"], ["cat", "dog"], ["cat", "dog"], "plural"),
    ok("singular model on plural classes", ["Cat", "Dog"], ["cats", "dogs"], ["cats", "dogs"], "plural"),
    ok("es and ies plurals", ["boxes", "churches", "puppies", "glass"], ["box", "church", "puppy", "glasses"],
       ["box", "church", "puppy", "glasses"], "plural"),
    no("cat and cats in one head", ["cat", "cats"], ["cat"], ["cat", "cats"]),
    no("buses is the plural of bus and of buse", ["buses"], ["bus", "buse"], ["buses"],
       ambiguous={"buses": ["bus", "buse"]}),
    # ---------------------------------------------------------------- images: CIFAR, Fashion-MNIST, Food-101, beans
    ok("cifar10 models", CIFAR10, CIFAR10, CIFAR10, "exact"),
    ok("cifar10 upper case", [c.upper() for c in CIFAR10], CIFAR10, CIFAR10, "normalised"),
    no("cifar10 short names without synonyms", ["plane", "car"] + CIFAR10[2:], CIFAR10, ["plane", "car"]),
    ok("cifar10 short names with synonyms", ["plane", "car"] + CIFAR10[2:], CIFAR10, CIFAR10,
       ["synonym", "synonym"] + ["exact"] * 8, synonyms={"plane": "airplane", "car": "automobile"}),
    ok("cifar100 snake case", ["aquarium_fish", "maple_tree", "sweet_pepper"], ["aquarium fish", "maple tree",
       "sweet pepper"], ["aquarium fish", "maple tree", "sweet pepper"], "normalised"),
    ok("fashion_mnist T-shirt/top", ["T-shirt/top", "Trouser", "Ankle boot"], FASHION,
       ["T - shirt / top", "Trouser", "Ankle boot"], ["normalised", "exact", "exact"]),
    ok("food101 snake case on spaced names", ["apple_pie", "baby_back_ribs", "beef_tartare"],
       ["apple pie", "baby back ribs", "beef tartare"], ["apple pie", "baby back ribs", "beef tartare"], "normalised"),
    ok("beans", ["angular_leaf_spot", "bean_rust", "healthy"], ["angular_leaf_spot", "bean_rust", "healthy"],
       ["angular_leaf_spot", "bean_rust", "healthy"], "exact"),
    ok("digits as words (demo model)", ["Zero", "One", "Two"], ["0", "1", "2"], ["0", "1", "2"], "synonym",
       synonyms={"zero": "0", "one": "1", "two": "2"}),
    ok("digits 0..9", [str(i) for i in range(10)], [str(i) for i in range(10)], [str(i) for i in range(10)], "exact"),
    ok("digits with a unit", [f"{i} digit" for i in range(3)], ["0", "1", "2"], ["0", "1", "2"], "numeric"),
    ok("ag_news Sci/Tech casing", ["world", "sports", "business", "sci/tech"], AG_NEWS, AG_NEWS, "normalised"),
    ok("ag_news Sci-Tech", ["World", "Sports", "Business", "Sci-Tech"], AG_NEWS, AG_NEWS,
       ["exact", "exact", "exact", "normalised"]),
    no("VOC names on COCO classes", ["aeroplane", "motorbike", "sofa", "tvmonitor", "diningtable", "pottedplant"],
       VOC_IN_COCO, ["aeroplane", "motorbike", "sofa", "tvmonitor", "diningtable", "pottedplant"]),
    ok("VOC names on COCO classes with synonyms", ["aeroplane", "motorbike", "sofa", "tvmonitor"], VOC_IN_COCO,
       ["airplane", "motorcycle", "couch", "tv"], "synonym",
       synonyms={"aeroplane": "airplane", "motorbike": "motorcycle", "sofa": "couch", "tvmonitor": "tv"}),
    # ---------------------------------------------------------------- ImageNet excerpts (Hugging Face labels)
    ok("HF ImageNet comma lists", ["tench, Tinca tinca", "goldfish, Carassius auratus"], ["tench", "goldfish"],
       ["tench", "goldfish"], "alias"),
    ok("first listed name that names a class", ["great white shark, white shark, man-eater"], ["white shark"],
       ["white shark"], "alias"),
    ok("Cardigan corgi and cardigan sweater", ["Cardigan, Cardigan Welsh corgi", "cardigan"], ["Cardigan", "cardigan"],
       ["Cardigan", "cardigan"], ["alias", "exact"]),
    no("CARDIGAN on Cardigan and cardigan", ["CARDIGAN"], ["Cardigan", "cardigan"], ["CARDIGAN"],
       ambiguous={"CARDIGAN": ["Cardigan", "cardigan"]}),
    ok("sunglass and sunglasses", ["sunglass", "sunglasses, dark glasses, shades"], ["sunglass", "sunglasses"],
       ["sunglass", "sunglasses"], ["exact", "alias"]),
    ok("maillot and maillot, tank suit", ["maillot", "maillot, tank suit"], ["maillot", "maillot (tank suit)"],
       ["maillot", "maillot (tank suit)"], ["exact", "normalised"]),
    ok("two cranes, trained", ["crane", "crane"], ["crane (bird)", "crane (machine)"],
       ["crane (bird)", "crane (machine)"], "index (duplicate name)", trained=True),
    no("two cranes, not trained", ["crane", "crane"], ["crane (bird)", "crane (machine)"], ["crane", "crane"],
       ambiguous={"crane": ["crane (bird)", "crane (machine)"]}),
    no("one crane on two qualified cranes", ["crane", "heron"], ["crane (bird)", "crane (machine)", "heron"],
       ["crane"], ambiguous={"crane": ["crane (bird)", "crane (machine)"]}, trained=True),
    no("crane on a single qualified crane (a synonym must say so)", ["crane"], ["crane (bird)"], ["crane"]),
    ok("two maillots (FiftyOne short names), trained", ["maillot", "maillot"], ["maillot", "maillot (tank suit)"],
       ["maillot", "maillot (tank suit)"], "index (duplicate name)", trained=True),
    ok("dataset repeats a name, trained", ["crane", "crane"], ["crane", "crane"], ["crane", "crane"],
       "index (duplicate name)", trained=True),
    no("dataset repeats a name, not trained", ["crane", "heron"], ["crane", "heron", "crane"], ["crane"],
       ambiguous={"crane": ["crane", "crane"]}),
    no("spam, eggs names nothing", ["tabby", "spam, eggs"], ["tabby", "tiger cat"], ["spam, eggs"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_label_table(case: Case) -> None:
    id2label = dict(enumerate(case.labels))
    if case.expect is not None:
        mapping = map_labels(id2label, case.classes, case.synonyms, trained_on_dataset=case.trained)
        assert [case.classes[j] for j in mapping.model_to_dataset] == case.expect
        assert [mapping.methods[lab] for lab in case.labels] == case.rules
        doc = mapping.to_doc(case.classes, id2label)
        assert [p["rule"] for p in doc["pairs"]] == case.rules
        return
    with pytest.raises(LabelMappingError) as err:
        map_labels(id2label, case.classes, case.synonyms, trained_on_dataset=case.trained)
    assert err.value.unmapped == case.refused
    assert err.value.ambiguous == case.ambiguous
    message = str(err.value)
    assert message.startswith(f"{len(case.refused)} of {len(case.labels)} model labels")
    for label in case.refused:
        assert repr(label) in message and label in err.value.reasons
    for candidates in case.ambiguous.values():
        assert all(repr(c) in message for c in candidates)


def test_table_is_large_and_covers_every_rule() -> None:
    assert len(CASES) >= 150
    assert len({c.name for c in CASES}) == len(CASES)
    rules = {r for c in CASES if c.rules for r in c.rules}
    assert rules == {"exact", "normalised", "synonym", "plural", "numeric", "alias", "index", "index (duplicate name)"}
    assert sum(c.refused is not None for c in CASES) >= 60


# ---------------------------------------------------------------------------------------------- full ImageNet-1k
def hf_imagenet_labels() -> dict[int, str]:
    """The ImageNet-1k id2label Hugging Face's ImageNet configs carry ("tench, Tinca tinca", ..., "crane" at
    134 and 517): timm's synset lemma lists (timm/data/_info/imagenet_synset_to_lemma.txt, in the order of
    imagenet_synsets.txt)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return {i: info.index_to_description(i) for i in range(1000)}


def test_imagenet_head_trained_maps_all_1000_by_index_and_name() -> None:
    labels, classes = hf_imagenet_labels(), imagenet_class_names()
    assert [i for i, lab in labels.items() if lab == "crane"] == [134, 517]
    assert (labels[638], labels[639]) == ("maillot", "maillot, tank suit")
    assert (classes[134], classes[517], classes[638], classes[639]) == (
        "crane (bird)", "crane (machine)", "maillot", "maillot (tank suit)")
    mapping = map_labels(labels, classes, trained_on_dataset=True)
    assert mapping.model_to_dataset == list(range(1000))
    doc = mapping.to_doc(classes, labels)
    assert doc["pairs"][134] == {"model_label": "crane", "dataset_class": "crane (bird)", "rule": "index (duplicate name)"}
    assert doc["pairs"][517] == {"model_label": "crane", "dataset_class": "crane (machine)", "rule": "index (duplicate name)"}
    assert doc["pairs"][281]["rule"] == "alias" and doc["pairs"][281]["dataset_class"] == "tabby"
    assert doc["pairs"][639]["rule"] == "normalised"
    assert doc["pairs"][264]["dataset_class"] == "Cardigan" and doc["pairs"][474]["dataset_class"] == "cardigan"
    by_rule = {r: sum(p["rule"] == r for p in doc["pairs"]) for r in {p["rule"] for p in doc["pairs"]}}
    assert set(by_rule) == {"exact", "alias", "normalised", "index (duplicate name)"}
    assert by_rule["index (duplicate name)"] == 2 and sum(by_rule.values()) == 1000


def test_imagenet_head_not_trained_refuses_only_the_duplicate_names() -> None:
    labels, classes = hf_imagenet_labels(), imagenet_class_names()
    with pytest.raises(LabelMappingError) as err:
        map_labels(labels, classes, trained_on_dataset=False)
    assert err.value.unmapped == ["crane", "crane"]
    assert err.value.ambiguous == {"crane": ["crane (bird)", "crane (machine)"]}
    assert "outputs [134, 517] all 'crane'" in str(err.value) and str(err.value).startswith("2 of 1000")
    # trained, but a head of another size: no index rule either
    smaller = classes[:999]
    with pytest.raises(LabelMappingError) as err:
        map_labels(labels, smaller, trained_on_dataset=True)
    assert err.value.unmapped == ["crane", "crane", labels[999]]


def test_imagenet_short_names_head_and_dataset() -> None:
    """FiftyOne's short names repeat "crane" and "maillot": as a model head on the project's unique names, and
    the HF head on a dataset that keeps the repeated short names."""
    short, classes = dict(enumerate(imagenet_short_names())), imagenet_class_names()
    mapping = map_labels(short, classes, trained_on_dataset=True)
    assert mapping.model_to_dataset == list(range(1000))
    assert mapping.methods["crane"] == mapping.methods["maillot"] == "index (duplicate name)"
    with pytest.raises(LabelMappingError) as err:
        map_labels(short, classes)
    assert err.value.unmapped == ["crane", "crane", "maillot", "maillot"]
    mapping = map_labels(hf_imagenet_labels(), list(short.values()), trained_on_dataset=True)
    assert mapping.model_to_dataset == list(range(1000))
    assert mapping.methods["maillot"] == mapping.methods["maillot, tank suit"] == "index (duplicate name)"


def test_an_imagenet_head_with_its_two_cranes_is_inferred_trained_on_the_imagenet_set() -> None:
    """A Hugging Face ImageNet-1k head whose card names no dataset: its labels match the ImageNet set except the
    repeated "crane"/"maillot", which sit at the outputs whose classes they name; so the set is inferred, and the
    repeated names then map by index."""
    from core.fiftyone_support import imagenet_class_names
    from scraper.training_data import infer_training_datasets

    classes = imagenet_class_names()
    head = hf_imagenet_labels()
    datasets = {"imagenet-foolbox20": {"datatype": "image", "classes": [{"label": c} for c in classes], "synonyms": {}},
                "digits": {"datatype": "image", "classes": [{"label": str(i)} for i in range(10)], "synonyms": {}}}
    model = {"task": "image-classification", "config": {"id2label": {str(i): lab for i, lab in head.items()}}}
    names, evidence = infer_training_datasets(model, datasets)
    assert names == ["imagenet-foolbox20"] and evidence["coverage"] == {"imagenet-foolbox20": 1.0}
    mapping = map_labels(head, classes, trained_on_dataset=True)
    assert mapping.model_to_dataset == list(range(1000))
    assert mapping.methods["crane"] == "index (duplicate name)"
    # a head whose repeated names sit elsewhere is not taken for the set's order
    swapped = dict(head)
    swapped[134], swapped[0] = head[0], head[134]
    swapped_model = {**model, "config": {"id2label": {str(i): lab for i, lab in swapped.items()}}}
    assert infer_training_datasets(swapped_model, datasets)[0] == []
