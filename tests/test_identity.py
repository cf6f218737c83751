from core import identity as ident
from core.fingerprint import canonical_json, fingerprint


def test_canonical_json_is_order_independent():
    assert canonical_json({"b": 1, "a": [1, {"d": 2, "c": 3}]}) == '{"a":[1,{"c":3,"d":2}],"b":1}'
    assert fingerprint({"b": 1, "a": 2}) == fingerprint({"a": 2, "b": 1})


def _ids(revision="abc123", module_version=1, variant_version=1, seed=0, processor_version=1):
    model = {"source": "huggingface", "name": "org/model", "revision": revision}
    work = ident.work_fingerprint(
        {"name": "hf-text-classification/rotten_tomatoes", "version": module_version},
        {"name": "rotten_tomatoes", "split": "test", "revision": "r1"},
        {"name": "typos", "version": variant_version, "params": {"rate": 0.05}, "seed": seed},
    )
    inf = ident.inference_id(ident.model_fingerprint(model), work)
    return inf, ident.result_id(inf, ident.processor_fingerprint("classification", processor_version))


def test_golden_task_id():
    """Pinned: a change here means every stored result would be recomputed. Bump SCHEMA_VERSION on purpose."""
    inf, res = _ids()
    assert inf == "925486e21b33e5b7c2bd3e6d6b1e6aad6f21109f486abd8ad3201a3a78f5d60b"
    assert res == "cd0ab306c376db3041280301ae2b842d987f55f1b24512c9d91d83e15a7d167c"


def test_every_field_changes_the_id():
    base = _ids()
    for kwargs in ({"revision": "def"}, {"module_version": 2}, {"variant_version": 2}, {"seed": 1}):
        assert _ids(**kwargs)[0] != base[0], kwargs
    assert _ids(processor_version=2)[0] == base[0]
    assert _ids(processor_version=2)[1] != base[1]
