"""IR: typing, validation, text dump, serialisation round trip."""

import numpy as np
import pytest

from spikec import ir
from spikec.errors import IRError
from spikec.ir import Kind


def small_graph(threshold=1.0):
    rng = np.random.default_rng(0)
    return ir.Graph(
        [
            ir.InputNode("x", (), features=(2, 6, 6), time=1, layout="static"),
            ir.RepeatTimeNode("rep", ("x",), time=3),
            ir.ConvNode("conv", ("rep",), "net.conv", weight=rng.normal(size=(4, 2, 3, 3)).astype(np.float32),
                        bias=None, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1),
            ir.BatchNormNode("bn", ("conv",), "net.bn", mean=np.zeros(4, np.float32), var=np.ones(4, np.float32),
                             weight=np.full(4, 2.0, np.float32), bias=np.full(4, 0.1, np.float32), eps=1e-5),
            ir.NeuronNode("lif", ("bn",), "net.lif", model="LIF", v_threshold=threshold, v_reset=0.0, tau=2.0),
            ir.MaxPoolNode("pool", ("lif",), "net.pool", kernel=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1)),
            ir.AddNode("res", ("pool", "pool"), "net"),
            ir.ReshapeNode("flat", ("res",), "net", features=(36,)),
            ir.LinearNode("fc", ("flat",), "net.fc", weight=rng.normal(size=(5, 36)).astype(np.float32),
                          bias=np.zeros(5, np.float32)),
            ir.ReduceNode("tmean", ("fc",), "net", reduce="mean", over_time=True),
            ir.OutputNode("out", ("tmean",), layout="batch"),
        ],
        name="small",
        metadata={"T": 3, "note": "test"},
    ).validate()


def test_types_kinds_and_time_behaviour():
    g = small_graph()
    t = g.types
    assert str(t["conv"]) == "real[T=3, B, 4, 6, 6]"
    assert t["lif"].kind is Kind.SPIKE
    assert t["pool"].kind is Kind.SPIKE  # max-pool of spikes is an OR
    assert t["res"].kind is Kind.COUNT  # sum of two spike tensors
    assert t["tmean"].time == 1 and t["tmean"].features == (5,)
    assert g["lif"].time_behaviour() is ir.TimeBehaviour.STATEFUL
    assert g["tmean"].time_behaviour() is ir.TimeBehaviour.MIXES_STEPS
    assert g["conv"].time_behaviour() is ir.TimeBehaviour.PER_STEP
    assert [u.name for u in g.users("pool")] == ["res"]


def test_matmul_and_mul_kinds():
    nodes = [
        ir.InputNode("x", (), features=(4, 8), time=2, layout="sequence"),
        ir.NeuronNode("q", ("x",), v_threshold=0.5),
        ir.PermuteNode("kt", ("q",), perm=(1, 0)),
        ir.MatMulNode("qk", ("q", "kt")),
        ir.MulNode("and", ("q", "q")),
        ir.MulNode("graded", ("qk", "qk")),
        ir.ScaleNode("s", ("qk",), factor=0.125),
        ir.OutputNode("o", ("s",)),
    ]
    t = ir.Graph(nodes).validate().types
    assert t["qk"].features == (4, 4) and t["qk"].kind is Kind.COUNT
    assert t["and"].kind is Kind.SPIKE
    assert t["graded"].kind is Kind.COUNT
    assert t["s"].kind is Kind.REAL


@pytest.mark.parametrize(
    "bad, message",
    [
        (ir.LinearNode("fc2", ("flat",), "net.fc2", weight=np.zeros((3, 7), np.float32)), "in_features 7"),
        (ir.AddNode("bad", ("pool", "conv")), "do not broadcast"),
        (ir.SliceNode("sl", ("conv",), axis=0, start=2, stop=9), "out of range"),
        (ir.ReshapeNode("rs", ("conv",), features=(5,)), "cannot reshape"),
        (ir.AddNode("ghost", ("pool", "nowhere")), "do not exist"),
    ],
)
def test_validation_names_the_bad_node(bad, message):
    g = small_graph()
    nodes = list(g.nodes[:-1]) + [bad, g.nodes[-1]]
    with pytest.raises(IRError, match=message) as e:
        ir.Graph(nodes).validate()
    assert bad.name in str(e.value)


def test_cycle_and_duplicates_rejected():
    g = small_graph()
    nodes = list(g.nodes)
    # make the conv read the add that comes after it
    nodes[2] = nodes[2].replace(inputs=("res",))
    with pytest.raises(IRError, match="later in the graph|cycle"):
        ir.Graph(nodes).validate()
    with pytest.raises(IRError, match="cycle"):
        ir.topological_order(nodes)
    with pytest.raises(IRError, match="duplicate"):
        ir.Graph(list(g.nodes) + [g.nodes[1]])


def test_graph_needs_inputs_and_outputs():
    g = small_graph()
    with pytest.raises(IRError, match="no output"):
        ir.Graph(g.nodes[:-1]).validate()


def test_text_dump_names_sources_and_types():
    text = ir.format_graph(small_graph())
    assert "%lif : spike[T=3, B, 4, 6, 6] = neuron(%bn)" in text
    assert "# net.lif" in text
    assert "LIF tau=2 th=1 reset=hard->0" in text


@pytest.mark.parametrize("threshold", [1.0, np.array([0.5, 1.0, 1.5, 2.0], np.float32).reshape(4, 1, 1)])
def test_serialisation_round_trip_is_exact(tmp_path, threshold):
    g = small_graph(threshold)
    ir.save(g, tmp_path / "g")
    back = ir.load(tmp_path / "g")
    assert back.same_as(g)
    assert back.types == g.types
    # saving the loaded graph again gives identical files
    ir.save(back, tmp_path / "g2")
    assert (tmp_path / "g" / "graph.json").read_text() == (tmp_path / "g2" / "graph.json").read_text()


def test_round_trip_of_traced_models(tmp_path, zoo_models):
    for fam, (_, _, g) in zoo_models.items():
        ir.save(g, tmp_path / fam)
        assert ir.load(tmp_path / fam).same_as(g), fam


def test_same_as_detects_changes():
    g = small_graph()
    w = g["fc"].weight.copy()
    w[0, 0] = np.nextafter(w[0, 0], np.float32(np.inf))
    changed = g.rewrite([n.replace(weight=w) if n.name == "fc" else n for n in g.nodes])
    assert not changed.same_as(g)


def test_load_rejects_missing_and_corrupt(tmp_path):
    with pytest.raises(IRError, match="not a spikec IR directory"):
        ir.load(tmp_path)
    ir.save(small_graph(), tmp_path / "g")
    (tmp_path / "g" / "graph.json").write_text("{not json")
    with pytest.raises(IRError, match="corrupt"):
        ir.load(tmp_path / "g")


def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
    from spikec.ir import serialize

    def boom(graph, d):
        (d / "graph.json").write_text("partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(serialize, "write_graph_files", boom)
    with pytest.raises(RuntimeError):
        serialize.save(small_graph(), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_last_reads_names_each_value_at_its_last_reader():
    """x read by a and c, a by b and c: after c both are dead; b and c die at their reader d."""
    nodes = [ir.InputNode("x", (), features=(2,)), ir.ScaleNode("a", ("x",), factor=2.0),
             ir.ScaleNode("b", ("a",), factor=2.0), ir.AddNode("c", ("a", "x")), ir.AddNode("d", ("b", "c")),
             ir.OutputNode("o", ("d",))]
    dead = {k: set(v) for k, v in ir.last_reads(nodes).items()}
    assert dead == {"x": set(), "a": set(), "b": set(), "c": {"a", "x"}, "d": {"b", "c"}, "o": {"d"}}
