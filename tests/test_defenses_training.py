"""Weight decay and adversarial training, trained by the host loop on real digits."""

from __future__ import annotations

import pytest
import torch

from robench import api

EXPERIMENT = """
[experiment]
name = "defenses"
device = "cpu"

[data]
dataset = "digits"

[training]
epochs = 12
lr = 0.003
batch_size = 64

[[models]]
name = "mlp"
hidden = [32]

[defenses]
none = []
l2 = [{ defense = "weight_decay", norm = "l2", coefficient = 0.05 }]
l1 = [{ defense = "weight_decay", norm = "l1", coefficient = 0.002 }]

[[defenses.pgd]]
defense = "adversarial_training"
attack = "torchattacks.PGD"
eps = 0.1
attack_options = { steps = 5, alpha = 0.04 }

[[attacks]]
name = "pgd"
attack = "foolbox.LinfPGD"
steps = 10
rel_stepsize = 0.25
samples = 200
epsilons = [0.1, 0.15]

[report]
formats = []
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("defenses")
    (root / "exp.toml").write_text(EXPERIMENT)
    return api.run(root / "exp.toml", out=root / "run", progress=False)


def _weights(run, defense):
    key = run.record.cells[f"mlp--{defense}--s0"].key
    state = torch.load(run.path / "models" / f"{key}.pt", weights_only=True)
    return [v for k, v in state.items() if v.dim() > 1]


def test_weight_decay_shrinks_the_penalised_norm(run):
    l2 = {d: sum(w.pow(2).sum() for w in _weights(run, d)).sqrt().item() for d in ("none", "l2")}
    l1 = {d: sum(w.abs().sum() for w in _weights(run, d)).item() for d in ("none", "l1")}
    assert l2["l2"] < 0.8 * l2["none"], l2
    assert l1["l1"] < 0.8 * l1["none"], l1


def test_pgd_training_raises_pgd_accuracy(run):
    df = run.results
    acc = df[df["epsilon"] == 0.15].groupby("defense")["correct_adv"].mean()
    clean = df.groupby("defense")["correct_clean"].mean()
    assert acc["pgd"] > acc["none"] + 0.15, acc.to_dict()
    assert clean["pgd"] > 0.85 and clean["none"] > 0.85, clean.to_dict()


def test_history_is_measured_in_eval_mode_every_epoch(run):
    history = run.histories
    none = history[history["cell"] == "mlp--none--s0"]
    assert sorted(none["epoch"].unique()) == list(range(13))
    last = none[none["epoch"] == 12].set_index("split")
    assert last.loc["train", "accuracy"] > 0.9
    # epoch 0 is the untrained model: near chance on 10 classes
    first = none[none["epoch"] == 0].set_index("split")
    assert first.loc["test", "accuracy"] < 0.3


def test_stacked_losses_compose_in_any_order():
    """Label smoothing (a per-sample loss) and adversarial training (a weighted batch)
    give exactly one SGD step on 0.75 * LS(x) + 0.25 * LS(x_adv), whichever comes first."""
    import copy

    import torch.nn.functional as F

    from robench.components import TrainingContext
    from robench.config import TrainingSpec, component_spec
    from robench.plugins import get_registry
    from robench.training import train

    registry = get_registry()
    data = registry.get("dataset", "digits")().load(None)
    data.x_train, data.y_train = data.x_train[:32], data.y_train[:32]
    data.x_test, data.y_test = data.x_test[:8], data.y_test[:8]
    factory = registry.get("model", "mlp")(registry.get("model", "mlp").Options(hidden=(8,)))
    smoothing = component_spec("defense", "label_smoothing", {"smoothing": 0.2}).create(registry)
    spec = TrainingSpec(optimizer="sgd", lr=0.5, momentum=0.0, epochs=1, batch_size=32)

    def attack(name, options):
        return component_spec("attack", name, options).create(registry)

    torch.manual_seed(0)
    start = factory.build(data.info)
    expected = copy.deepcopy(start)
    fgsm = attack("torchattacks.FGSM", {})
    x, y = data.x_train, data.y_train
    x_adv = fgsm.perturb(expected.eval(), x, y, 0.1, bounds=(0.0, 1.0))
    expected.train()
    loss = (0.75 * F.cross_entropy(expected(x), y, label_smoothing=0.2)
            + 0.25 * F.cross_entropy(expected(x_adv), y, label_smoothing=0.2))
    loss.backward()
    with torch.no_grad():
        for p in expected.parameters():
            p -= 0.5 * p.grad

    for order in ("smoothing first", "adversarial first"):
        adversarial = component_spec("defense", "adversarial_training", {
            "attack": "torchattacks.FGSM", "eps": 0.1, "mix": 0.25}).create(registry)
        stack = [smoothing, adversarial] if order == "smoothing first" else [adversarial,
                                                                            smoothing]
        model = copy.deepcopy(start)
        ctx = TrainingContext(info=data.info, device=torch.device("cpu"), epochs=1,
                              generator=torch.Generator().manual_seed(0), attack=attack)
        train(model, factory, data, spec, stack, ctx, progress=False)
        for got, want in zip(model.parameters(), expected.parameters()):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=order)
