"""`device_map:` (placement.py): a Hugging Face model placed by accelerate gives the values of the
plain load, its load options are recorded and key the value cache, and it is never moved whole.

This machine has no GPU: a split over several GPUs cannot run here. What runs is what accelerate
does on a CPU: the whole model on the CPU (`{"": cpu}`, `auto`), and a split of zoo:ioi's layers
between the CPU and disk (offloaded weights sit on `meta` until their layer runs), which starts the
forward pass from an embedding that is not on a real device.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from circuitcheck import check, models
from circuitcheck.session import Options, load_options

HYPOTHESES = Path(__file__).resolve().parent.parent / "hypotheses"
COMPONENTS = HYPOTHESES / "ioi_components.hyp.yaml"  # dla adds up several layers' activations
# zoo:ioi over the CPU and disk, the embedding (tied to lm_head) on disk
SPLIT_MAP = {"transformer.wte": "disk", "transformer.wpe": "disk", "transformer.h.0": "disk", "transformer.h.1": "cpu",
             "transformer.h.2": "cpu", "transformer.ln_f": "cpu", "lm_head": "disk"}
SPLIT = json.dumps(SPLIT_MAP)  # YAML reads JSON
IOI = models.ModelSource("zoo", "ioi")


def values(results, dump: Path) -> dict:
    """Each case's per-prompt values (as --cc-dump-values writes them), by claim and case; errors apart."""
    out = {}
    for p in sorted(dump.rglob("*.json")):
        record = json.loads(p.read_text())
        out[(record["claim"], record["case"])] = (record["values"], record.get("clean"))
    assert not [r.error for r in results if r.error]
    return out


def placed_copy(source: Path, folder: Path, device_map: str) -> Path:
    """`source` with its `model: zoo:ioi` placed by `device_map`, in `folder`."""
    text = source.read_text()
    assert text.count("model: zoo:ioi\n") == 1
    path = folder / source.name
    path.write_text(text.replace("model: zoo:ioi\n", f"model: {{zoo: ioi, device_map: {device_map}}}\n"))
    return path


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    dump = tmp_path_factory.mktemp("plain")
    return values(check(COMPONENTS, Options(dump_values=str(dump))), dump)


def test_the_shipped_ioi_claims_give_the_plain_values_under_device_map(plain, tmp_path):
    """`--cc-device-map auto` on the shipped file, and a copy naming `device_map: {"": cpu}`: every
    per-prompt value of every case equals the plain load's, bit for bit."""
    auto = check(COMPONENTS, Options(device_map="auto", dump_values=str(tmp_path / "auto")))
    assert auto[0].load["device_map"] == "auto" and "device" not in auto[0].load
    assert values(auto, tmp_path / "auto") == plain

    on_cpu = check(placed_copy(COMPONENTS, tmp_path, '{"": cpu}'), Options(dump_values=str(tmp_path / "cpu")))
    assert on_cpu[0].load["device_map"] == {"": "cpu"}
    assert values(on_cpu, tmp_path / "cpu") == plain
    assert len(plain) >= 18 and {claim for claim, _ in plain} <= {r.claim_id for r in auto} and [r.verdict for r in auto] == [r.verdict for r in on_cpu]


SPLIT_CLAIMS = """\
model: %s
prompts:
  generator: text
  template: "When {IO} and {S} went to the store, {S} gave a drink to"
  slots: {IO: &names [Mary, John, Alice, Bob, Tom, Anna, Kate, James, Sarah, David], S: *names}
  answer: IO
  counterfactual: S
  n: 60
claims:
  - id: clean
    says: "IO over S"
    measure: logit_diff
    expect: {at_least: 1}
  - id: attends
    says: "L2H0 attends from the end to IO"
    measure: {attention: {head: L2H0, from: last, to: IO}}
    expect: {at_least: 0.1}
  - id: mean-ablated-mlp
    says: "kept clean activations of a layer on disk"
    under: {ablate: {hook: mlp_out, layer: 1, method: mean}}
    measure: logit_diff
    expect: {drop: {at_most: 5}}
  - id: resampled
    says: "another prompt's residual, in a layer on the CPU"
    under: {ablate: {hook: resid_pre, layer: 2, at: "S#2", method: resample}}
    measure: logit_diff
    expect: {at_most: 10}
  - id: patched
    says: "a head's mean over other prompts"
    under:
      patch:
        heads: [L2H0]
        mean: true
        source: {generator: text, template: "When {IO} and {S} went to the store, {C} gave a drink to",
                 slots: {IO: *names, S: *names, C: *names}, answer: IO, n: 60, seed: 1}
    measure: logit_diff
    expect: {drop: {at_least: 1}}
"""
WEIGHTS_CLAIM = """\
  - id: reads-weights
    says: "dla reads W_O, which sits on disk"
    measure: {dla: {component: L2H0, toward: {diff: [correct, counterfactual]}}}
    expect: {at_least: 0}
"""


def test_a_split_over_cpu_and_disk_gives_the_plain_values(tmp_path):
    """Every run-based value of zoo:ioi split between the CPU and disk equals the plain load's; a
    measure reading offloaded weights is its claim's error, saying they are not loaded."""
    runs = {}
    for name, model in (("plain", "zoo:ioi"), ("split", f"{{zoo: ioi, device_map: {SPLIT}}}")):
        (tmp_path / name).mkdir()
        path = tmp_path / name / "split.hyp.yaml"
        path.write_text(SPLIT_CLAIMS % model + (WEIGHTS_CLAIM if name == "split" else ""))
        results = check(path, Options(dump_values=str(tmp_path / name / "dump")))
        if name == "split":
            weights = results.pop()
            assert weights.verdict == "error" and "reads weights that `device_map:` offloaded" in weights.error, \
                weights.error
        runs[name] = values(results, tmp_path / name / "dump")
    assert len(runs["plain"]) == 5 and runs["split"] == runs["plain"]
    model = models.load(IOI, load_options(_spec(SPLIT_MAP), Options(), IOI))
    assert next(model.parameters()).device.type == "meta"  # offloaded, not pulled onto one device
    assert models.input_device(model).type == "cpu"


def _spec(device_map):
    from circuitcheck.files.loader import model_source

    return model_source({"zoo": "ioi", "device_map": device_map})[1]


def test_weight_processing_on_offloaded_weights_is_each_claims_error():
    from circuitcheck.models.placement import frozen

    options = models.LoadOptions(None, processing=("fold_ln",), device_map=frozen(SPLIT_MAP))
    with pytest.raises(models.ModelError, match="weight processing failed on the model placed with device_map"):
        models.load(IOI, options)


def test_prepare_leaves_a_placed_model_where_accelerate_put_it():
    from torch import nn

    class Placed(nn.Linear):
        moved = False

        def to(self, *args, **kwargs):
            self.moved = True
            return self

    placed = models.prepare(Placed(2, 2).train(), models.LoadOptions(None, device_map="auto"))
    assert not placed.moved and not placed.training
    assert models.prepare(Placed(2, 2), models.LoadOptions()).moved  # a model on one device is moved and cast


def test_load_options_record_and_key_the_placement(tmp_path):
    from circuitcheck.runs.cache import ValueCache
    from circuitcheck.models.fingerprint import fingerprint
    from circuitcheck.files.loader import model_source
    from circuitcheck.files.spec import Measure

    placed = load_options(_spec({"": "cpu"}), Options(), IOI)
    assert placed.device_map == (("", "cpu"),) and placed.device is None
    assert placed.record()["device_map"] == {"": "cpu"} and "device" not in placed.record()
    fp = fingerprint(IOI, placed.record())
    assert fp["device_map"] == {"": "cpu"} and "device" not in fp
    plain = load_options(model_source({"zoo": "ioi"})[1], Options(), IOI)
    assert plain.record()["device"] == "cpu" and "device_map" not in plain.record()
    from circuitcheck.files.spec import ModelSpec  # GPU 0 is refused at collection on this machine: not validated here

    spec = ModelSpec.model_validate({"zoo": "ioi", "device_map": "auto", "max_memory": {"0": "70GiB", "cpu": 2**30}})
    capped = load_options(spec, Options(), IOI)
    assert capped.max_memory == ((0, "70GiB"), ("cpu", 2**30))  # a GPU index as accelerate takes it
    assert capped.record()["max_memory"] == {"0": "70GiB", "cpu": 2**30}  # as JSON writes it
    cache = ValueCache(tmp_path)
    m = Measure.model_validate("logit_diff")
    keys = {cache.key(IOI, [], (), m, o, 1024, 0) for o in (placed, plain, load_options(_spec("auto"), Options(), IOI))}
    assert len(keys) == 3 and None not in keys


def test_the_flag_places_hugging_face_models_only_where_a_file_names_no_device():
    from circuitcheck.files.loader import model_source

    flag = Options(device="cpu", device_map="balanced")
    ioi = model_source({"zoo": "ioi"})[1]
    assert load_options(ioi, flag, IOI).device_map == "balanced"
    assert load_options(model_source({"zoo": "ioi", "device": "cpu"})[1], flag, IOI).device_map is None
    assert load_options(_spec("sequential"), flag, IOI).device_map == "sequential"  # the file's own wins
    native = models.ModelSource("zoo", "max-of-list")
    options = load_options(model_source({"zoo": "max-of-list"})[1], flag, native)
    assert options.device_map is None and options.device == "cpu"
    # `--cc-model` may put a native model where a file placed a Hugging Face one: it loads on `device`
    assert load_options(_spec("auto"), Options(), native).device_map is None


def test_a_placement_accelerate_refuses_at_load_is_each_claims_error(tmp_path):
    """A map that names no module of the model passes collection (module names are the model's,
    read only at load); what accelerate or TransformerLens then says is the claims' error."""
    path = tmp_path / "t.hyp.yaml"
    path.write_text(SPLIT_CLAIMS.split("\nclaims:")[0] % "{zoo: ioi, device_map: {transformer.h.0: disk}}" + textwrap.dedent("""
        claims:
          - id: clean
            says: "IO over S"
            measure: logit_diff
            expect: {at_least: 1}
        """))
    (result,) = check(path)
    assert result.verdict == "error", result
    assert "accelerate could not place" in result.error and "Traceback" not in result.error
